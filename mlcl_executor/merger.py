"""MLCLMerger: the `uses_after` of a sharded MLCLIndexer (flows/merger.yml, flows/flow.sharded.yml)."""

# No `from __future__ import annotations`: Jina reads the endpoint annotations at class creation.

from typing import Any, Dict, List, Optional

from docarray import DocList
from jina import Executor, requests

from .params import param_bool, param_int
from .schemas import GalleryDoc, LevelDoc, LevelMatchDoc, MatchDoc, QueryDoc, StatsDoc, VectorsDoc
from .topk import reference_to_skip, top_k


class MLCLMerger(Executor):
    """`uses_after` of a sharded MLCLIndexer: merges the answers of all shards.

    `/lookup`, `/thumbnails`: each id's answer from the shard that owns it. `/search`: the global page (`offset`, `limit`) from the per-shard lists of
    their first `offset + limit` (exact: each shard's list holds every
    candidate that could be on the global page). `/count`: the sum. Write endpoints: docarray's reduce
    (per-document fields merged, e.g. the `error` set by the owning shard).
    Set `default_limit` to the indexer's.
    """

    def __init__(self, default_limit: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.default_limit = int(default_limit)

    @requests(on="/search")
    def merge_search(
        self,
        docs: DocList[QueryDoc] = None,  # annotated: Jina takes the request schema from `docs`
        docs_matrix: Optional[List[DocList[QueryDoc]]] = None,
        parameters: Optional[Dict[str, Any]] = None,
        **kwargs: Any,
    ) -> DocList[QueryDoc]:
        shards = [d for d in (docs_matrix or []) if d is not None]
        if not shards:
            return DocList[QueryDoc]()
        limit = param_int(parameters, "limit", self.default_limit, low=1)  # the shards checked its upper bound
        offset = param_int(parameters, "offset", 0, low=0)
        exclude = param_bool(parameters, "exclude_reference", True)
        out = shards[0]
        by_id = [{d.id: d for d in other} for other in shards[1:]]
        for doc in out:
            answers = [doc, *(table[doc.id] for table in by_id if doc.id in table)]
            skip = reference_to_skip(doc.reference_id, exclude)
            kept = top_k([zip(a.matches, a.scores) for a in answers], limit, skip, offset)
            doc.matches, doc.scores = DocList[MatchDoc]([m for m, _ in kept]), [s for _, s in kept]
            doc.error = "; ".join(dict.fromkeys(a.error for a in answers if a.error)) or None
            if doc.levels:
                doc.levels = self._merge_levels(answers, limit, skip, offset)
        return out

    @staticmethod
    def _merge_levels(answers: List[QueryDoc], limit: int, skip: Optional[str], offset: int) -> DocList[LevelDoc]:
        """Each fusion level's global top-`limit` from the shards' level answers (as the fused answer)."""
        pools: Dict[str, List[LevelDoc]] = {}  # level name -> that level's answer from each shard, in level order
        for answer in answers:
            for level in answer.levels or []:
                pools.setdefault(level.level, []).append(level)
        merged = []
        for name, levels in pools.items():
            kept = top_k([zip(level.matches, level.scores) for level in levels], limit, skip, offset)
            merged.append(LevelDoc(level=name, matches=DocList[LevelMatchDoc]([m for m, _ in kept]), scores=[s for _, s in kept]))
        return DocList[LevelDoc](merged)

    @requests(on="/encode")
    def merge_encode(
        self, docs: DocList[QueryDoc] = None, docs_matrix: Optional[List[DocList[QueryDoc]]] = None, **kwargs: Any
    ) -> DocList[QueryDoc]:
        shards = [d for d in (docs_matrix or []) if d is not None]
        return shards[0] if shards else (docs if docs is not None else DocList[QueryDoc]())

    @requests(on="/count")
    def merge_count(
        self, docs: DocList[StatsDoc] = None, docs_matrix: Optional[List[DocList[StatsDoc]]] = None, **kwargs: Any
    ) -> DocList[StatsDoc]:
        per_shard: Dict[str, int] = {}
        dim = model = None
        for docs in docs_matrix or []:
            for doc in docs:
                per_shard.update(doc.shards)
                dim, model = dim or doc.dim, model or doc.model
        return DocList[StatsDoc]([StatsDoc(id="count", count=sum(per_shard.values()), shards=per_shard, dim=dim, model=model)])

    @requests(on=["/lookup", "/thumbnails"])
    def merge_lookup(
        self, docs: DocList[GalleryDoc] = None, docs_matrix: Optional[List[DocList[GalleryDoc]]] = None, **kwargs: Any
    ) -> DocList[GalleryDoc]:
        """Each id's answer (features, a thumbnail, or an error) from the shard that owns it; the others left it as it came."""
        shards = [d for d in (docs_matrix or []) if d is not None]
        if not shards:
            return DocList[GalleryDoc]()
        out = shards[0]
        for other in shards[1:]:
            for doc, theirs in zip(out, other):
                if doc.embedding is None and doc.error is None and not doc.tags:
                    doc.embedding, doc.error, doc.tags = theirs.embedding, theirs.error, theirs.tags
        return out

    @requests(on="/index_vectors")
    def merge_vectors(
        self, docs: DocList[VectorsDoc] = None, docs_matrix: Optional[List[DocList[VectorsDoc]]] = None, **kwargs: Any
    ) -> DocList[VectorsDoc]:
        """Blocks of vectors: each shard stored the rows it owns; counts are summed, errors kept."""
        shards = [d for d in (docs_matrix or []) if d is not None]
        if not shards:
            return DocList[VectorsDoc]()
        out = shards[0]
        for other in shards[1:]:
            for doc, theirs in zip(out, other):
                doc.count += theirs.count
                doc.error = doc.error or theirs.error
        return out

    # Explicit endpoints, no default one: the gateway expects the endpoints of
    # `uses_after` to be endpoints of the shards as well.
    @requests(on=["/index", "/update", "/delete", "/clear"])
    def merge(
        self, docs: DocList[GalleryDoc] = None, docs_matrix: Optional[List[DocList[GalleryDoc]]] = None, **kwargs: Any
    ) -> DocList[GalleryDoc]:
        from docarray.utils.reduce import reduce_all

        shards = [d for d in (docs_matrix or []) if d is not None]
        if not shards:
            return DocList[GalleryDoc]()
        return shards[0] if len(shards) == 1 else reduce_all(shards)


__all__ = ["MLCLMerger"]
