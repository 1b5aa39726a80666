"""MLCLEncoder: a thin Jina Executor around `mlcl.model` (gallery vectors and fused query vectors).

All model work is batched: the images of a (dynamically batched) request are
decoded to pixels in worker processes (`decoding.py`), normalised as one
tensor, and encoded in chunks of `batch_size`; a request mixing composed,
image-only and text-only queries is split into (at most) three groups, one
model call per chunk of each.

The bulk endpoints (`/index`, `/update`, `/encode`) are coroutines. Jina runs
a plain endpoint function in a thread beside its event loop, and the two
threads take turns at the GIL (the loop parses the next request while the
model runs), which cost the Flow a fifth of the bare model's throughput on 2
cores; a coroutine runs the model in the loop's own thread, and awaits the
decoding, which overlaps the previous request's model call on another core
(docs/performance.md). `/search` stays a plain function (see there).

A gallery document that arrives with an `embedding` (and no image) skips the
model, if its `mlcl_model` tag names this encoder's checkpoint (see
`vectors.py`): vectors computed elsewhere can be indexed in bulk.

A document that cannot be used gets `error` (naming it and the reason) and no
`embedding`; the rest of the request is served. The endpoint never raises for
bad input, so one bad image cannot fail a batch of other clients' documents.
"""

# No `from __future__ import annotations`: Jina reads the endpoint annotations
# (DocList[...] types) at class creation to learn the request/response schemas.

import asyncio
import os
import threading

import numpy as np
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from docarray import DocList
from docarray.proto import DocListProto
from jina import Executor, requests

from mlcl.paths import DEFAULT_CHECKPOINT

from . import jina_compat
from .errors import RequestError
from .decoding import DecodeSpec, Decoded, ImageDecoder
from .image_source import ImagePolicy, image_uri
from .launcher import model_process
from .levels import encode_with_levels, param_flag
from .proto_docs import ProtoQueryDoc, wrap as wrap_proto
from .schemas import GalleryDoc, LevelDoc, QueryDoc, VectorsDoc
from .thumbnails import THUMBNAIL_TAG
from .standard_docs import DOCARRAY_ENDPOINTS, ImageDoc, ImageTextDoc, TextDoc, to_query
from .vectors import MODEL_TAG, checkpoint_id

DOCUMENTS = ("mlcl", "docarray")

Doc = Union[GalleryDoc, QueryDoc, ProtoQueryDoc]

jina_compat.apply()  # empty requests answered at once; client errors without tracebacks


def doc_name(doc: Any, position: int) -> str:
    """How errors name a document: its id, or its position when a client sent none (HTTP)."""
    return f"document {doc.id!r}" if doc.id else f"document #{position} (no id)"


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available (use device: cpu or auto)")
    return device


def drop_payloads(docs: Sequence[Doc]) -> None:
    """Answers do not echo image payloads (bytes, tensors, data URIs): keep path/URL strings only.

    Nothing downstream needs them once encoded: the indexer stores only `image_uri`
    (a path or URL) with the vector, and clients have their own images.
    """
    for doc in docs:
        if doc.image is not None and image_uri(doc.image) is None:
            doc.image = None


class MLCLEncoder(Executor):
    """Encodes gallery images (`/index`, `/update`) and composed queries (`/search`); `/encode` does either.

    Configured in `config.yml` (`with:`): `checkpoint` (default: the bundled
    model), `device` (`auto`/`cpu`/`cuda[:N]`), `batch_size`,
    `inference_weighting` (`train` | `released`; default: the checkpoint's), and the image-source policy
    `image_roots`, `allow_urls`, `max_image_bytes`, `max_image_pixels`, `url_timeout`;
    gallery thumbnails `thumbnail_size` (px a side, 0: none) and `thumbnail_max_bytes`;
    `decode_workers` (processes that decode images; 0: decode in the request's thread).

    `documents`: `mlcl` (default) serves our schemas (`GalleryDoc`, `QueryDoc`)
    on `/index`, `/update`, `/search`, `/encode`; `docarray` serves docarray's
    standard documents instead, and only on `/index` (ImageDoc) and `/search`
    (ImageTextDoc), so that the Executor drops into a Flow built on them (see
    `standard_docs.py` for the mapping); `uses_requests` remaps endpoints to
    `encode_image_docs`, `encode_text_docs` or `encode_query_docs`.
    """

    def __init__(
        self,
        checkpoint: Optional[str] = None,
        device: str = "auto",
        batch_size: int = 32,
        inference_weighting: Optional[str] = None,
        image_roots: Optional[List[str]] = None,
        allow_urls: bool = False,
        max_image_bytes: int = 20 * 1024 * 1024,
        max_image_pixels: int = 40_000_000,
        url_timeout: float = 10.0,
        decode_workers: int = 1,
        torch_threads: Optional[int] = None,
        thumbnail_size: int = 128,
        thumbnail_max_bytes: int = 32768,
        documents: str = "mlcl",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if documents not in DOCUMENTS:
            raise ValueError(f"MLCLEncoder: documents must be one of {DOCUMENTS}, got {documents!r}")
        self.documents = documents
        if documents == "docarray":
            self._serve_standard_documents(kwargs.get("requests") or {})
        path = Path(os.path.expanduser(checkpoint)) if checkpoint else DEFAULT_CHECKPOINT
        if not path.is_file():
            hint = " (the bundled default model is missing from this install)" if not checkpoint else ""
            raise FileNotFoundError(f"MLCLEncoder: checkpoint {str(path)!r} does not exist{hint}")
        if batch_size < 1:
            raise ValueError(f"MLCLEncoder: batch_size must be >= 1, got {batch_size}")
        # torch and the model load here, not at import: the Flow's other processes import
        # this module too (to register the Executors) and must not pay for torch.
        model_process()
        import torch

        from mlcl.model import load_checkpoint

        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        try:
            self.device = resolve_device(device)
            self.model = load_checkpoint(path, device=self.device)
            if inference_weighting:  # None: the checkpoint's own (an imported model's is its source's)
                self.model.set_inference_weighting(inference_weighting)
        except Exception as exc:
            # One line that says why (jina's own report is a traceback, hidden by `mlcl serve`).
            self.logger.error(f"MLCLEncoder cannot start: {exc}")
            raise
        self.checkpoint = str(path)
        self.model_id = checkpoint_id(path)  # gallery vectors sent in bulk must carry it (vectors.py)
        self.batch_size = int(batch_size)
        self.thumbnail_size, self.thumbnail_max_bytes = int(thumbnail_size), int(thumbnail_max_bytes)
        self.policy = ImagePolicy.create(image_roots, allow_urls, max_image_bytes, max_image_pixels, url_timeout)
        if int(decode_workers) < 0:
            raise ValueError(f"MLCLEncoder: decode_workers must be >= 0, got {decode_workers}")
        spec = DecodeSpec(self.policy, self.model.pixels, self.thumbnail_size, self.thumbnail_max_bytes)
        self.decoder = ImageDecoder(spec, workers=int(decode_workers), chunk=self.batch_size)
        # Model calls run one at a time: the endpoints' coroutines interleave only between model calls, and a
        # plain endpoint (`/search`, docarray's documents) runs in jina's thread pool. Never held across an `await`.
        self._model_lock = threading.Lock()
        # Requests past decoding at once: one in the model, one per worker decoding, one queued. More would
        # only hold decoded pixels in memory while they wait for the model.
        self._in_flight = asyncio.Semaphore(int(decode_workers) + 2)
        self.logger.info(
            f"MLCLEncoder: {path.name} (model id {self.model_id}) on {self.device}, dim {self.model.embed_dim}, "
            f"image roots {[str(r) for r in self.policy.roots] or 'none'}, urls {'on' if self.policy.allow_urls else 'off'}"
        )

    # ------------------------------------------------------------ endpoints
    @requests(on=["/index", "/update"])
    async def encode_gallery(self, docs: DocList[GalleryDoc], **kwargs: Any) -> DocList[GalleryDoc]:
        """Gallery images -> unit-norm gallery vectors (and a thumbnail in `tags`, see thumbnails.py); documents
        with a vector and no image are checked (width, finite, `tags["mlcl_model"]` = this model's id) and passed
        on without model work (vectors.py)."""
        await self._encode_async(docs, as_query=False, thumbnails=self.thumbnail_size > 0)
        return docs

    @requests(on="/index_vectors")
    def check_vector_blocks(self, docs: DocList[VectorsDoc], **kwargs: Any) -> DocList[VectorsDoc]:
        """Blocks of precomputed gallery vectors: checked (model id, width, finite, one id per row), no model work."""
        width = self.model.embed_dim
        for i, doc in enumerate(docs):
            vecs = None if doc.embeddings is None else np.asarray(doc.embeddings, dtype=np.float32)
            name = doc_name(doc, i)
            if doc.model != self.model_id:
                doc.error = (f"{name}: vectors of model {doc.model!r}, this encoder's model is {self.model_id!r} "
                             "(vectors of another model cannot be mixed in)")
            elif vecs is None or vecs.ndim != 2 or vecs.shape[1] != width:
                doc.error = f"{name}: embeddings of shape {None if vecs is None else vecs.shape}, expected (n, {width})"
            elif len(doc.ids) != len(vecs):
                doc.error = f"{name}: {len(doc.ids)} ids for {len(vecs)} vectors"
            elif not np.isfinite(vecs).all():
                doc.error = f"{name}: embeddings have NaN or infinite values"
            else:
                doc.error = None
                continue
            doc.embeddings = None
        return docs

    @requests(on="/search")
    def encode_queries(self, docs: DocList[QueryDoc], parameters: Optional[Dict[str, Any]] = None, **kwargs: Any) -> DocList[QueryDoc]:
        """Queries (image + text, image only, or text only) -> fused MLCL query vectors.

        `parameters: {"levels": true}`: composed queries also get each fusion level's vector (`levels`).
        A plain function, unlike the bulk endpoints: as a coroutine behind jina's dynamic batching, one
        query in ten over gRPC took ~85 ms longer (p95 130 vs 50 ms, docs/performance.md).
        """
        for doc in docs:
            doc.levels = DocList[LevelDoc]()
        self._encode(docs, as_query=True, levels=param_flag(parameters, "levels"))
        return docs

    @requests(on="/encode")
    @jina_compat.raw_documents("encode_proto")
    async def encode(self, docs: DocList[QueryDoc], parameters: Optional[Dict[str, Any]] = None, **kwargs: Any) -> DocList[QueryDoc]:
        """Vectors without indexing: queries by default, gallery vectors with `parameters: {"as": "gallery"}`.

        In a Flow, requests whose documents `proto_docs` can read are answered by `encode_proto` instead
        (the same work, without building docarray documents)."""
        await self._encode_async(docs, as_query=self._encode_as(parameters))
        return docs

    async def encode_proto(self, docs: DocListProto, parameters: Optional[Dict[str, Any]] = None) -> bool:
        """`/encode` on the request's protobuf, in place; False (nothing changed) when `proto_docs.wrap` cannot read it."""
        as_query = self._encode_as(parameters)
        wrapped = wrap_proto(docs)
        if wrapped is None:
            return False
        await self._encode_async(wrapped, as_query=as_query)
        return True

    @staticmethod
    def _encode_as(parameters: Optional[Dict[str, Any]]) -> bool:
        kind = str((parameters or {}).get("as", "query")).lower()
        if kind not in ("query", "gallery"):
            raise RequestError(f"parameter 'as' must be 'query' or 'gallery', got {kind!r}")
        return kind == "query"

    # ------------------------------------------- docarray's standard documents
    # Not decorated: bound to endpoints by `documents: docarray` (or `uses_requests`); Jina reads
    # each method's request/response schema from these annotations.
    def encode_image_docs(self, docs: DocList[ImageDoc], **kwargs: Any) -> DocList[ImageDoc]:
        """ImageDoc -> the same ImageDoc with `embedding` (the gallery vector; also the image-only query vector)."""
        return self._encode_standard(docs, as_query=False)

    def encode_text_docs(self, docs: DocList[TextDoc], **kwargs: Any) -> DocList[TextDoc]:
        """TextDoc -> the same TextDoc with `embedding` (the text-only query vector)."""
        return self._encode_standard(docs, as_query=True)

    def encode_query_docs(self, docs: DocList[ImageTextDoc], **kwargs: Any) -> DocList[ImageTextDoc]:
        """ImageTextDoc -> the same doc with `embedding` (composed, image-only or text-only query vector)."""
        return self._encode_standard(docs, as_query=True)

    def _serve_standard_documents(self, user_requests: Dict[str, str]) -> None:
        """Expose only the docarray endpoints: a Flow checks that every endpoint of an Executor
        exists on the next one with the same schema, so our own must not be left showing.
        Endpoints the user bound with `uses_requests` are kept as bound."""
        from jina.serve.executors import __dry_run_endpoint__

        for endpoint in list(self.requests):
            if endpoint != __dry_run_endpoint__ and endpoint not in user_requests:
                del self.requests[endpoint]
        # Jina's own binding of `requests:`/`uses_requests` (schemas from the annotations).
        self._add_requests({e: fn for e, fn in DOCARRAY_ENDPOINTS.items() if e not in user_requests})

    def _encode_standard(self, docs: Any, as_query: bool) -> Any:
        internal = [to_query(doc) for doc in docs]
        self._encode(internal, as_query=as_query)
        for i, (doc, mine) in enumerate(zip(docs, internal)):
            doc.embedding = mine.embedding
            if mine.error:  # standard documents have no error field: say it in the log
                self.logger.warning(f"MLCLEncoder: not encoded: {mine.error}")
        return docs

    # -------------------------------------------------------------- helpers
    def _encode(self, docs: Sequence[Doc], as_query: bool, levels: bool = False, thumbnails: bool = False) -> None:
        """Fill `embedding` (or `error`) of every document, in place (and `levels`, `tags.thumbnail` when asked)."""
        given, todo = self._begin(docs, as_query)
        pixels = self._take_decoded(docs, todo, self.decoder.decode([docs[i].image for i in todo], thumbnails))
        for key, chunk in self._model_batches(docs, given, as_query):
            with self._model_lock:
                self._run_model(docs, key, chunk, pixels, as_query, levels)
        drop_payloads(docs)

    async def _encode_async(self, docs: Sequence[Doc], as_query: bool, levels: bool = False, thumbnails: bool = False) -> None:
        """`_encode` for the endpoints: decoding is awaited (other requests go on meanwhile), the model runs here."""
        given, todo = self._begin(docs, as_query)
        async with self._in_flight:
            decoded = await self.decoder.decode_async([docs[i].image for i in todo], thumbnails)
            pixels = self._take_decoded(docs, todo, decoded)
            for n, (key, chunk) in enumerate(self._model_batches(docs, given, as_query)):
                if n:
                    await asyncio.sleep(0)  # a large request lets the loop serve others between model calls
                with self._model_lock:
                    self._run_model(docs, key, chunk, pixels, as_query, levels)
        drop_payloads(docs)

    def _begin(self, docs: Sequence[Doc], as_query: bool) -> Tuple[set, List[int]]:
        """Reset the outputs, check vectors sent in bulk; -> (positions with a given vector, positions to decode)."""
        given = set() if as_query else self._accept_vectors(docs)
        todo = []
        for i, doc in enumerate(docs):
            if i in given:
                continue
            # reset only what is set: every assignment to a document is a pydantic validation
            if doc.embedding is not None:
                doc.embedding = None
            if doc.error is not None:
                doc.error = None
            if doc.image is not None:
                todo.append(i)
        return given, todo

    def _take_decoded(self, docs: Sequence[Doc], todo: List[int], results: List[Decoded]) -> Dict[int, np.ndarray]:
        """Pixels by position; a failed image becomes the document's `error`, a thumbnail goes into its tags."""
        pixels: Dict[int, np.ndarray] = {}
        for i, result in zip(todo, results):
            doc = docs[i]
            if isinstance(result, str):
                doc.error = f"{doc_name(doc, i)}: {result}"
                continue
            pixels[i], thumbnail = result
            if thumbnail:
                doc.tags = {**(doc.tags or {}), THUMBNAIL_TAG: thumbnail}
        return pixels

    def _model_batches(self, docs: Sequence[Doc], given: set, as_query: bool) -> List[Tuple[Tuple[bool, bool], List[int]]]:
        """((has image, has text), positions) per model call: documents grouped by kind, in chunks of `batch_size`."""
        groups: Dict[Tuple[bool, bool], List[int]] = {}
        for i, doc in enumerate(docs):
            if i in given or doc.error:  # a given vector, or an image that failed to load
                continue
            text = getattr(doc, "text", None) if as_query else None
            text = text.strip() if isinstance(text, str) else None
            has_image = doc.image is not None
            if not as_query and not has_image:
                doc.error = f"{doc_name(doc, i)}: has no image (a gallery document needs one)"
                continue
            if not has_image and not text:
                doc.error = f"{doc_name(doc, i)}: has neither image nor text"
                continue
            groups.setdefault((has_image, bool(text)), []).append(i)
        return [(key, idx[s : s + self.batch_size]) for key, idx in groups.items() for s in range(0, len(idx), self.batch_size)]

    def _run_model(self, docs: Sequence[Doc], key: Tuple[bool, bool], chunk: List[int], pixels: Dict[int, np.ndarray],
                   as_query: bool, levels: bool) -> None:
        import torch

        has_image, has_text = key
        batch = self.model.images_from_pixels([pixels[i] for i in chunk], self.device) if has_image else None
        texts = [docs[i].text.strip() for i in chunk] if has_text else None
        with torch.inference_mode():
            if as_query and levels and has_image and has_text:
                vectors, per_level = encode_with_levels(self.model, batch, texts)
                for row, i in enumerate(chunk):
                    docs[i].levels = per_level[row]
            elif as_query:
                vectors = self.model.encode_query(images=batch, texts=texts)
            else:
                vectors = self.model.encode_image(batch)
        vectors = vectors.float().cpu().numpy() if isinstance(vectors, torch.Tensor) else vectors
        for row, i in enumerate(chunk):
            docs[i].embedding = vectors[row]

    def _accept_vectors(self, docs: Sequence[Doc]) -> set:
        """Positions of gallery documents that bring their own vector (no image): checked here, no model work."""
        given = set()
        for i, doc in enumerate(docs):
            # only gallery documents (/index, /update): /encode takes QueryDocs, which always get a fresh vector
            if not isinstance(doc, GalleryDoc) or doc.image is not None or doc.embedding is None:
                continue
            given.add(i)
            doc.error = None
            model = doc.tags.pop(MODEL_TAG, None) if isinstance(doc.tags, dict) else None
            vec = np.asarray(doc.embedding, dtype=np.float32)
            width = self.model.embed_dim
            if model != self.model_id:
                doc.error = (
                    f"{doc_name(doc, i)}: its embedding has tags['{MODEL_TAG}'] = {model!r}, this encoder's model is "
                    f"{self.model_id!r} (vectors of another model cannot be mixed in; send the image instead)"
                )
            elif vec.shape != (width,):
                doc.error = f"{doc_name(doc, i)}: embedding of shape {vec.shape}, the model's vectors have width {width}"
            elif not np.isfinite(vec).all():
                doc.error = f"{doc_name(doc, i)}: embedding has NaN or infinite values"
            if doc.error:
                doc.embedding = None
            else:
                doc.embedding = vec
        return given

    def close(self) -> None:
        self.decoder.close()
        super().close()

