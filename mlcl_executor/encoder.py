"""MLCLEncoder: a thin Jina Executor around `mlcl.model` (gallery vectors and fused query vectors).

The work is `pipeline.py` (jina-free: items in, vectors or per-item errors
out); each endpoint reads its documents into items with the adapter of its
document family (`typed_docs.py`, `proto_docs.py`, `standard_docs.py`), runs a
job and writes the answers back. Images are decoded to pixels in worker
processes (`decoding.py`).

The bulk endpoints (`/index`, `/update`, `/encode`) are coroutines: they await
the decoding, which overlaps the previous request's model call on another core
(and, for a request larger than `batch_size`, its own earlier parts' calls),
and run the model in the event loop's own thread (a plain endpoint runs in a
thread beside the loop, and the two take turns at the GIL); `/search` and the
docarray endpoints are plain functions (docs/performance.md says why, with the
figures).

A gallery document that arrives with an `embedding` (and no image) skips the
model, if its `mlcl_model` tag names this encoder's checkpoint (`vectors.py`):
vectors computed elsewhere can be indexed in bulk.

A document that cannot be used gets `error` (naming it and the reason) and no
`embedding`; the rest of the request is served. The endpoint never raises for
bad input, so one bad image cannot fail a batch of other clients' documents.
"""

# No `from __future__ import annotations`: Jina reads the endpoint annotations
# (DocList[...] types) at class creation to learn the request/response schemas.

import asyncio
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from docarray import DocList
from docarray.proto import DocListProto
from jina import Executor, requests

from mlcl.paths import DEFAULT_CHECKPOINT

from . import proto_docs, standard_docs, typed_docs
from .decoding import DecodeSpec, ImageDecoder, resolve_workers
from .errors import doc_name
from .image_source import ImagePolicy
from .jina_patches import raw_documents
from .jina_patches.executor import serve_only
from .params import param_bool, param_choice
from .pipeline import EncodingPipeline, Job
from .schemas import GalleryDoc, LevelDoc, QueryDoc, VectorsDoc
from .standard_docs import DOCARRAY_ENDPOINTS, ImageDoc, ImageTextDoc, TextDoc
from .torch_gate import model_process
from .vectors import checkpoint_id, model_problem, norms_problem, vector_problem

DOCUMENTS = ("mlcl", "docarray")


class MLCLEncoder(Executor):
    """Encodes gallery images (`/index`, `/update`) and composed queries (`/search`); `/encode` does either.

    Configured in `config.yml` (`with:`): `checkpoint` (default: the bundled
    model), `device` (`auto`/`cpu`/`cuda[:N]`), `batch_size`,
    `inference_weighting` (`train` | `released`; default: the checkpoint's), and the image-source policy
    `image_roots`, `allow_urls`, `max_image_bytes`, `max_image_pixels`, `url_timeout`;
    gallery thumbnails `thumbnail_size` (px a side, 0: none) and `thumbnail_max_bytes`;
    `decode_workers` (processes that decode images; 0: decode in the request's thread; `auto`: the cores
    the model leaves free), `jpeg_draft`; the model's `precision` and `memory_format` (mlcl.model.inference).

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
        decode_workers: Union[int, str] = "auto",
        torch_threads: Optional[int] = None,
        jpeg_draft: bool = True,
        precision: str = "fp32",
        memory_format: str = "auto",
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
            # A Flow checks that every endpoint of an Executor exists on the next one with the same schema:
            # only the docarray endpoints show (those the user bound with `uses_requests` stay as bound).
            serve_only(self, DOCARRAY_ENDPOINTS, keep=kwargs.get("requests") or {})
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

        from mlcl.device import resolve_device
        from mlcl.model import load_checkpoint
        from mlcl.model.inference import prepare_for_inference

        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        try:
            self.device = resolve_device(device)
            self.model = prepare_for_inference(load_checkpoint(path), self.device, precision, memory_format)
            workers = resolve_workers(decode_workers, self.device, torch.get_num_threads())
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
        spec = DecodeSpec(self.policy, self.model.pixels, self.thumbnail_size, self.thumbnail_max_bytes, bool(jpeg_draft))
        self.decoder = ImageDecoder(spec, workers=workers, chunk=self.batch_size)
        self.pipeline = EncodingPipeline(self.model, self.device, self.model_id, self.batch_size)
        # Requests past decoding at once: one in the model, one per worker decoding, one queued. More would
        # only hold decoded pixels in memory while they wait for the model.
        self._in_flight = asyncio.Semaphore(workers + 2)
        self.logger.info(
            f"MLCLEncoder: {path.name} (model id {self.model_id}) on {self.device}, dim {self.model.embed_dim}, "
            f"image roots {[str(r) for r in self.policy.roots] or 'none'}, urls {'on' if self.policy.allow_urls else 'off'}, "
            f"{precision}{', channels_last' if self.model.inference.channels_last else ''}, {workers} decode workers"
        )

    # ------------------------------------------------------------ endpoints
    @requests(on=["/index", "/update"])
    async def encode_gallery(self, docs: DocList[GalleryDoc], **kwargs: Any) -> DocList[GalleryDoc]:
        """Gallery images -> unit-norm gallery vectors (and a thumbnail in `tags`, see thumbnails.py); documents
        with a vector and no image are checked (width, finite, `tags["mlcl_model"]` = this model's id) and passed
        on without model work (vectors.py)."""
        items = typed_docs.items(docs)
        await self._run_async(self.pipeline.jobs(items, as_query=False, thumbnails=self.thumbnail_size > 0))
        typed_docs.answer(docs, items)
        return docs

    @requests(on="/index_vectors")
    def check_vector_blocks(self, docs: DocList[VectorsDoc], **kwargs: Any) -> DocList[VectorsDoc]:
        """Blocks of precomputed gallery vectors: checked (model id, width, finite, one id per row; norms when
        given: one per id, finite, > 0), no model work."""
        for i, doc in enumerate(docs):
            problem = model_problem(doc.model, self.model_id)
            if problem is not None:
                problem = f"vectors of model {doc.model!r}; {problem}"
            else:
                shape = vector_problem(doc.embeddings, self.model.embed_dim, rows=len(doc.ids))
                problem = shape and f"embeddings {shape} (one row per id: {len(doc.ids)} ids)"
                if problem is None and doc.norms is not None:
                    problem = norms_problem(doc.norms, doc.ids)
            doc.error = problem and f"{doc_name(doc.id, i)}: {problem}"
            if problem:
                doc.embeddings = doc.norms = None
        return docs

    @requests(on="/search")
    def encode_queries(self, docs: DocList[QueryDoc], parameters: Optional[Dict[str, Any]] = None, **kwargs: Any) -> DocList[QueryDoc]:
        """Queries (image + text, image only, or text only) -> fused MLCL query vectors.

        `parameters: {"levels": true}`: composed queries also get each fusion level's vector (`levels`).
        A plain function, unlike the bulk endpoints: behind jina's dynamic batching a coroutine made some
        queries much slower (docs/performance.md).
        """
        levels = param_bool(parameters, "levels")
        for doc in docs:
            if doc.levels:
                doc.levels = DocList[LevelDoc]()
        items = typed_docs.items(docs)
        self._run(self.pipeline.job(items, as_query=True, levels=levels))
        typed_docs.answer(docs, items)
        return docs

    @requests(on="/encode")
    @raw_documents("encode_proto")
    async def encode(self, docs: DocList[QueryDoc], parameters: Optional[Dict[str, Any]] = None, **kwargs: Any) -> DocList[QueryDoc]:
        """Vectors without indexing: queries by default, gallery vectors with `parameters: {"as": "gallery"}`.

        In a Flow, requests whose documents `proto_docs` can read are answered by `encode_proto` instead
        (the same work, without building docarray documents)."""
        items = typed_docs.items(docs)
        await self._run_async(self.pipeline.jobs(items, as_query=self._encode_as(parameters)))
        typed_docs.answer(docs, items)
        return docs

    async def encode_proto(self, docs: DocListProto, parameters: Optional[Dict[str, Any]] = None) -> bool:
        """`/encode` on the request's protobuf, in place; False (nothing changed) when `proto_docs` cannot read it."""
        as_query = self._encode_as(parameters)
        items = proto_docs.items(docs)
        if items is None:
            return False
        await self._run_async(self.pipeline.jobs(items, as_query=as_query))
        proto_docs.answer(docs, items)
        return True

    @staticmethod
    def _encode_as(parameters: Optional[Dict[str, Any]]) -> bool:
        return param_choice(parameters, "as", ("query", "gallery"), "query") == "query"

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

    def _encode_standard(self, docs: Any, as_query: bool) -> Any:
        items = standard_docs.items(docs)
        self._run(self.pipeline.job(items, as_query=as_query))
        standard_docs.answer(docs, items, self.logger)
        return docs

    # ---------------------------------------------------- running a job
    # The one pipeline, waited for in two ways: a plain endpoint decodes in its own thread; a coroutine awaits
    # the decode workers part by part (other requests go on meanwhile) and lets the loop serve others between
    # model calls.
    def _run(self, job: Job) -> None:
        job.decoded(self.decoder.decode(job.images, job.thumbnails))
        for _ in job.model_calls():
            pass

    async def _run_async(self, jobs: List[Job]) -> None:
        async with self._in_flight:
            # Every part's images are queued to the decode workers at once, in order: while the model runs a
            # part, the workers decode the next ones (pipeline.jobs).
            pending = [self.decoder.decode_soon(job.images, job.thumbnails) for job in jobs]
            try:
                for job, decoding in zip(jobs, pending):
                    job.decoded(await decoding)
                    for _ in job.model_calls():
                        await asyncio.sleep(0)
            finally:
                for decoding in pending:
                    decoding.close()  # the parts not awaited (an error stopped the request): no "never awaited"

    def close(self) -> None:
        self.decoder.close()
        super().close()


__all__ = ["DOCUMENTS", "MLCLEncoder"]
