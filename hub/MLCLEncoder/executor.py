"""Hub entry point: the `MLCLEncoder` of the installed `mlcl` package (requirements.txt installs it).

Importing it registers the Executor with Jina, so `jtype: MLCLEncoder` in config.yml resolves, and
applies mlcl's fixes to jina (`mlcl_executor.jina_register`, their one entry point).
"""

from mlcl_executor.jina_register import MLCLEncoder

__all__ = ["MLCLEncoder"]
