"""Jina Executors serving MLCL: `MLCLEncoder`, `MLCLIndexer`, `MLCLMerger` (sharded indexers) and `MLCLGateway`.

Only what runs inside a Flow's processes lives here; what serves a person at a
terminal (starting and stopping a Flow, clients, the demo, finding the Flow
YAMLs) is `mlcl_cli`. Modules:

- Executors: `encoder` (thin: reads documents, runs a job, writes answers),
  `indexer`, `merger`, `flow_gateway` (the gateway) with `ui/` (the search
  page), `jina_register` (what the YAMLs name in `py_modules`).
- The encoder's work: `pipeline` (jina-free: items in, vectors or per-item
  errors out) and its adapters per document family: `typed_docs` (our
  schemas), `proto_docs` (the request's protobuf), `standard_docs` (docarray's
  ImageDoc / TextDoc); images: `image_source` (decoding + safety policy),
  `decoding` and `decode_worker` (decoding in worker processes), `thumbnails`.
- One answer to each small question: `params` (request parameters), `topk`
  (ranked lists merged, the reference left out), `vectors` (the vector check,
  the model id), `errors` (client errors, how a document is named), `levels`
  (per-level answers), `torch_gate` (which processes may import torch).
- `schemas` (the typed DocArray v2 wire contract), `stores/` (the vector stores
  behind one contract, and their registry), `jina_patches/` (the only code
  that touches jina's private API).

Attributes are imported lazily, so `mlcl_executor.image_source` or
`.schemas` do not pull in the model. The `mlcl` core package never imports
this one (nor jina).
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "MLCLEncoder": "encoder",
    "MLCLIndexer": "indexer",
    "MLCLMerger": "merger",
    "MLCLGateway": "flow_gateway",
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
