"""The encoder's work, without jina or docarray: items in, vectors or per-item errors out.

An `Item` is what the model needs of one document (an image and/or a text, or a
gallery vector computed elsewhere with the model id it carries) plus what the
pipeline answers for it (`embedding`, or `error` naming the document and the
reason; `levels` and `thumbnail` when asked for). The adapters of the three
document families turn documents into items and write the answers back:
`typed_docs.py` (our schemas), `proto_docs.py` (the request's protobuf),
`standard_docs.py` (docarray's ImageDoc / TextDoc).

A `Job` is one request (or one part of it, `jobs`): `images` to decode (the endpoint decodes them, in its
thread or awaiting the decode workers), `decoded(results)`, then `model_calls()`,
which runs the model chunk by chunk and yields between calls (a coroutine endpoint
lets the event loop serve other requests there). All model work is batched: a
request mixing composed, image-only and text-only queries is split into (at most)
three groups, one model call per chunk of `batch_size` of each, the pixels of a
chunk normalised as one tensor (`MLCLModel.images_from_pixels`).

A query may bring its reference image as features instead of pixels (`reference`:
the indexed image's backbone features, looked up by gallery id, see
`reference.py`); they are fused with the text exactly as decoded pixels' features
would be. A gallery item answers `feature_norm` (the norm of its features, which
the unit vector lacks) beside its vector.

A bad item (an image that cannot be read, neither image nor text, a vector of
another model or width, a `reference_id` without an image that nothing looked
up) gets its `error`; the rest of the request is served.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .vectors import MODEL_TAG, model_problem, vector_problem

Kind = Tuple[str, bool]  # (the reference image as PIXELS, FEATURES or NONE; has text): the items one model call takes
PIXELS, FEATURES, NONE = "pixels", "features", ""


@dataclass(eq=False)
class Item:
    """One document as the model sees it, and the pipeline's answer for it."""

    name: str  # how messages name the document (errors.doc_name)
    image: Any = None  # an image value: bytes, a data URI, a path or URL, an array
    text: Optional[str] = None
    vector: Any = None  # gallery: a vector computed elsewhere, checked instead of encoded
    model: Optional[str] = None  # the model id that `vector` carries; answer: the model id of `embedding`
    embedding: Optional[np.ndarray] = None  # answer: the vector (None: see `error`)
    error: Optional[str] = None
    levels: Optional[Dict[str, np.ndarray]] = None  # answer: each fusion level's vector, by the model's level name
    thumbnail: Optional[str] = None  # answer: a small data URI of the image (gallery, when asked for)
    reference_id: Optional[str] = None  # query: the gallery id its reference image has
    reference: Any = None  # query: that image's backbone features, looked up by id (reference.py), instead of pixels
    feature_norm: Optional[float] = None  # answer (gallery): the norm of the image's features (reference.py)


class EncodingPipeline:
    """The model and what a request needs of it: its id (for given vectors), batch size, one model call at a time."""

    def __init__(self, model: Any, device: str, model_id: str, batch_size: int) -> None:
        self.model, self.device, self.model_id, self.batch_size = model, device, model_id, int(batch_size)
        # One model call at a time: coroutine endpoints interleave only between calls, and plain endpoints run
        # in jina's thread pool. Never held across an `await` (model_calls yields outside it).
        self.lock = threading.Lock()

    def job(self, items: Sequence[Item], as_query: bool, levels: bool = False, thumbnails: bool = False) -> "Job":
        """`as_query`: query vectors (composed, image-only or text-only), else gallery vectors of images."""
        return Job(self, items, as_query, levels, thumbnails)

    def jobs(self, items: Sequence[Item], as_query: bool, levels: bool = False, thumbnails: bool = False) -> List["Job"]:
        """`job` in parts of at most `batch_size` items, in order: a part's model call can run while the decode
        workers read the next parts' images (one job decodes all its images before its first model call).
        A request mixing query kinds may take a few more, smaller model calls than as one job."""
        size = self.batch_size
        return [Job(self, items[lo : lo + size], as_query, levels, thumbnails) for lo in range(0, len(items), size)]


class Job:
    """One request's encoding: `images` to decode, then `decoded(results)`, then `model_calls()`."""

    def __init__(self, pipeline: EncodingPipeline, items: Sequence[Item], as_query: bool, levels: bool, thumbnails: bool):
        self.pipeline, self.items, self.as_query, self.levels, self.thumbnails = pipeline, items, as_query, levels, thumbnails
        self.given: set = set()  # positions of gallery items that bring their own vector
        self.todo: List[int] = []  # positions of the images to decode
        self.pixels: Dict[int, np.ndarray] = {}
        for i, item in enumerate(items):
            if not as_query and item.image is None and item.vector is not None:
                self.given.add(i)
                self._check_given(item)
            elif item.image is not None:
                self.todo.append(i)
            elif as_query and (item.reference is not None or item.reference_id):
                self._check_reference(item)

    @property
    def images(self) -> List[Any]:
        return [self.items[i].image for i in self.todo]

    def decoded(self, results: Sequence[Any]) -> None:
        """The decoder's answer for `images`, in order: (pixels, thumbnail) or why the image cannot be used."""
        for i, result in zip(self.todo, results):
            item = self.items[i]
            if isinstance(result, str):
                item.error = f"{item.name}: {result}"
            else:
                self.pixels[i], item.thumbnail = result

    def model_calls(self) -> Iterator[None]:
        """Run the model on every item that needs it, one chunk per call; yields between calls."""
        for n, (kind, chunk) in enumerate(self._batches()):
            if n:
                yield
            with self.pipeline.lock:
                self._run(kind, chunk)

    # ------------------------------------------------------------------ steps
    def _check_given(self, item: Item) -> None:
        problem = model_problem(item.model, self.pipeline.model_id)
        if problem is not None:
            item.error = f"{item.name}: its embedding has tags['{MODEL_TAG}'] = {item.model!r}; {problem}"
        elif shape := vector_problem(item.vector, self.pipeline.model.embed_dim):
            item.error = f"{item.name}: embedding {shape} (the model's vectors have width {self.pipeline.model.embed_dim})"
        else:
            item.embedding = np.asarray(item.vector, dtype=np.float32)

    def _check_reference(self, item: Item) -> None:
        """A query without an image that names a gallery image: its features must have been looked up."""
        if item.reference is None:
            item.error = (f"{item.name}: reference_id {item.reference_id!r} without an image, and its features were not "
                          "looked up (a search by gallery id goes through MLCLGateway, which asks the index for them)")
        elif shape := vector_problem(item.reference, self.pipeline.model.embed_dim, nonzero=True):
            item.error = f"{item.name}: reference_features {shape}"

    def _batches(self) -> List[Tuple[Kind, List[int]]]:
        """(kind, positions) per model call: items grouped by kind, in chunks of `batch_size`."""
        groups: Dict[Kind, List[int]] = {}
        for i, item in enumerate(self.items):
            if i in self.given or item.error:  # a given vector, or an image that failed to load
                continue
            text = item.text.strip() if self.as_query and isinstance(item.text, str) else ""
            source = PIXELS if i in self.pixels else FEATURES if self.as_query and item.reference is not None else NONE
            if not self.as_query and source == NONE:
                item.error = f"{item.name}: has no image (a gallery document needs one)"
            elif source == NONE and not text:
                item.error = f"{item.name}: has neither image nor text"
            else:
                groups.setdefault((source, bool(text)), []).append(i)
        size = self.pipeline.batch_size
        return [(kind, idx[s : s + size]) for kind, idx in groups.items() for s in range(0, len(idx), size)]

    def _run(self, kind: Kind, chunk: List[int]) -> None:
        import torch

        model, (source, has_text) = self.pipeline.model, kind
        images = model.images_from_pixels([self.pixels[i] for i in chunk], self.pipeline.device) if source == PIXELS else None
        texts = [self.items[i].text.strip() for i in chunk] if has_text else None
        with torch.inference_mode():
            if source == FEATURES:  # the reference image as looked up by gallery id (reference.py): no pixels
                f_ref = torch.from_numpy(np.stack([np.asarray(self.items[i].reference, dtype=np.float32) for i in chunk]))
                f_ref = f_ref.to(model.device)
                if has_text and self.levels:
                    fused = model.query_levels(f_ref, model.text_features(texts))
                else:
                    fused = {"fused": model.compose(f_ref, model.text_features(texts)) if has_text else model.gallery_vectors(f_ref)}
                out = {k: v.float().cpu().numpy() for k, v in fused.items()}
            elif self.as_query and self.levels and images is not None and has_text:
                out = {k: v.float().cpu().numpy() for k, v in model.encode_query_levels(images, texts).items()}
            elif self.as_query:
                out = {"fused": model.encode_query(images=images, texts=texts).float().cpu().numpy()}
            else:
                vectors, norms = model.encode_gallery(images)
                out = {"fused": vectors.float().cpu().numpy()}
                for i, norm in zip(chunk, norms.float().cpu().tolist()):
                    self.items[i].feature_norm = norm
        vectors = out.pop("fused")
        if self.levels and out:
            for row, i in enumerate(chunk):
                self.items[i].levels = {level: v[row] for level, v in out.items()}
        for row, i in enumerate(chunk):
            self.items[i].embedding, self.items[i].model = vectors[row], self.pipeline.model_id


__all__ = ["EncodingPipeline", "Item", "Job"]
