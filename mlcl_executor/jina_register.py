"""What the Executor YAML files name in `py_modules` (by file path).

Jina imports a `py_modules` entry by path when it can find it as a file, so
this shim works whether or not the project is pip-installed: it imports the
`mlcl_executor` package (registering MLCLEncoder, MLCLIndexer and MLCLMerger
with Jina), putting the repository root on sys.path when it is not installed.
"""

import sys
from pathlib import Path

try:
    import mlcl_executor  # noqa: F401
except ModuleNotFoundError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Fixes to jina's worker (empty requests, client errors): see jina_compat.py.
from mlcl_executor import jina_compat  # noqa: E402

jina_compat.apply()

# Defining the classes registers them with Jina (jtype: MLCLEncoder, ..., gateway uses: MLCLGateway).
# None of these imports torch: only MLCLEncoder's constructor does.
from mlcl_executor.flow_gateway import MLCLGateway  # noqa: E402,F401
from mlcl_executor.encoder import MLCLEncoder  # noqa: E402,F401
from mlcl_executor.indexer import MLCLIndexer  # noqa: E402,F401
from mlcl_executor.merger import MLCLMerger  # noqa: E402,F401
