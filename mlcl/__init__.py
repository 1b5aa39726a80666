"""mlcl: composed image retrieval (reference image + text modifier) with MLCL.

The core package is plain PyTorch: the model (`mlcl.model`), data sets
(`mlcl.data`) and evaluation (`mlcl.eval`). Serving lives in `mlcl_executor`
(Jina) and training in `training` (LAVIS); neither is imported from here.
"""

__version__ = "0.1.0"
