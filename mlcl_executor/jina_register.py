"""What the Executor YAML files name in `py_modules` (`mlcl_executor.jina_register`, a module name).

Jina imports a `py_modules` entry by module name when it is not a file, so the
same YAML works from the repository and from the copy inside an installed
package (`mlcl_cli/resources.py`). Importing this module applies the fixes to
jina (`jina_patches/`, their one entry point) and registers MLCLEncoder,
MLCLIndexer, MLCLMerger and MLCLGateway with Jina. (Loaded by file path from a checkout
that is not installed, it puts the repository root on sys.path first.)
"""

import sys
from pathlib import Path

try:
    import mlcl_executor  # noqa: F401
except ModuleNotFoundError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The one entry point of the fixes to jina (empty requests, client errors, keep-alive, ...): jina_patches/.
from mlcl_executor import jina_patches  # noqa: E402

jina_patches.apply()

# Defining the classes registers them with Jina (jtype: MLCLEncoder, ..., gateway uses: MLCLGateway).
# None of these imports torch: only MLCLEncoder's constructor does.
from mlcl_executor.flow_gateway import MLCLGateway  # noqa: E402,F401
from mlcl_executor.encoder import MLCLEncoder  # noqa: E402,F401
from mlcl_executor.indexer import MLCLIndexer  # noqa: E402,F401
from mlcl_executor.merger import MLCLMerger  # noqa: E402,F401
