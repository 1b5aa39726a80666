"""Jina Executors serving MLCL: `MLCLEncoder`, `MLCLIndexer` and `MLCLMerger` (for sharded indexers).

Submodules: `schemas` (the typed DocArray v2 wire contract), `image_source`
(decoding + safety policy), `encoder`, `standard_docs` (docarray's ImageDoc /
TextDoc mapped to ours), `stores` (the vector stores behind one contract,
Milvus among them), `indexer`, `merger`, `serving` (Flow loading, clients),
`resources` (where the Flow YAMLs are, checkout or installed), `demo` (the
work of `mlcl demo`).

Attributes are imported lazily, so `mlcl_executor.image_source` or
`.schemas` do not pull in the model. The YAML files register the Executors
with Jina through `jina_register.py`. The `mlcl` core package never imports
this one (nor jina).
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "MLCLEncoder": "encoder",
    "MLCLIndexer": "indexer",
    "MLCLMerger": "merger",
    "GalleryDoc": "schemas",
    "MatchDoc": "schemas",
    "QueryDoc": "schemas",
    "StatsDoc": "schemas",
    "VectorsDoc": "schemas",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
