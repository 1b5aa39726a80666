"""Hub entry point: the `MLCLEncoder` of the installed `mlcl` package (requirements.txt installs it).

Importing it registers the Executor with Jina, so `jtype: MLCLEncoder` in config.yml resolves.
"""

from mlcl_executor.encoder import MLCLEncoder

__all__ = ["MLCLEncoder"]
