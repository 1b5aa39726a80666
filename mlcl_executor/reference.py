"""Search by gallery id: a query that names `reference_id` and carries no image uses the indexed image's features.

The fused query needs the reference image's backbone features `f_ref` (what
the combiner consumes, `MLCLModel.image_features`), not only the unit gallery
vector `normalize(f_ref)` that the stores keep. So at `/index` and `/update`
the encoder stores the one number the unit vector lacks, the norm of `f_ref`,
in the document's tags under `mlcl_feature_norm` (hidden from matches, like
the thumbnail); `f_ref = norm * unit vector` is then exact up to float32
rounding. Vectors computed offline (`mlcl encode`) carry their norms in the
vector folder; `mlcl index --vectors DIR` sends them in the `VectorsDoc`
blocks' `norms` and `/index_vectors` stores them under the same tag
(`norm_tags`).

Where the lookup happens (the encoder runs before the indexer in the Flow):
the gateway (`MLCLGateway`, `reference_lookup.py`) sees a `/search` whose
documents name a `reference_id` and carry no image, first sends the ids to
the indexer's `/lookup` through the Flow (the encoder does not serve
`/lookup`, so jina passes it by), writes each answer into the query's
`reference_features`, then sends the search on. The encoder fuses those
features with the text as it would the decoded image's. Because the lookup is
an ordinary request through the Flow, it is correct however the index is laid
out: with `shards` every shard answers the ids it owns and `MLCLMerger` keeps
the owner's answer; with `replicas` of a Milvus indexer any replica reads the
shared collection; no process keeps a copy that could go stale.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

#: The tag that holds the norm of a gallery image's backbone features (written by the encoder, read by /lookup).
NORM_TAG = "mlcl_feature_norm"


def norm_tags(norm: Optional[float]) -> Dict[str, float]:
    """The tags that store a gallery image's feature norm (none for None): the one place that writes them, for
    `/index` (the encoder's answer, `typed_docs.py`) and `/index_vectors` (the block's `norms`, `indexer.py`)."""
    return {NORM_TAG: float(norm)} if norm is not None else {}


def stored_features(unit: np.ndarray, tags: Optional[Mapping[str, Any]], name: str) -> Tuple[Optional[np.ndarray], Optional[str]]:
    """A stored document's reference features (norm x unit vector), or why it has none (a message naming `name`)."""
    norm = (tags or {}).get(NORM_TAG)
    if not isinstance(norm, (int, float)) or not np.isfinite(norm) or norm <= 0:
        return None, (f"{name} was indexed from a vector without its image's feature norm (`mlcl index --vectors "
                      "FILE.npy`, a folder from an mlcl encode older than the norms, or an embedding sent to /index): "
                      "search with its image instead")
    unit = np.asarray(unit, dtype=np.float32)
    return unit * np.float32(norm / np.linalg.norm(unit)), None


__all__ = ["NORM_TAG", "norm_tags", "stored_features"]
