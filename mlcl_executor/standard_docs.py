"""docarray's standard documents (ImageDoc, TextDoc) and their mapping to our schemas.

`MLCLEncoder` with `documents: docarray` serves Flows built on docarray's
standard documents (`docarray.documents`), e.g. one that had a CLIP encoder in
front of an indexer over `InMemoryExactNNIndex[ImageDoc]`. The mapping:

| you send                         | MLCL reads it as                                 | the answer           |
|----------------------------------|--------------------------------------------------|----------------------|
| `ImageDoc` to `/index`           | a gallery image (`GalleryDoc.image`)             | the same ImageDoc + `embedding` (gallery vector) |
| `ImageTextDoc` to `/search`      | a composed query: `image` (an ImageDoc) is the reference, `text.text` (a TextDoc) the modifier; either may be absent | the same doc + `embedding` (query vector) |
| `TextDoc` (endpoint of your choice, `encode_text_docs`) | a text-only query (`text`)  | the same TextDoc + `embedding` |
| `ImageDoc` (endpoint of your choice, `encode_image_docs`) | an image-only query ("more like this": the gallery vector) | the same ImageDoc + `embedding` |

An ImageDoc's image is its `tensor` if set, else its `bytes_`, else its `url`
(a data URI always; a local path only under the encoder's `image_roots`; an
http(s) URL only with `allow_urls`), under the same policy and caps as our
`image` field. A TextDoc's `url` and `bytes_` are not read (only `text`).
Standard documents have no `error` field: a document that cannot be encoded
comes back without `embedding`, and the encoder logs why (naming its id).
Nothing else of the document is changed (payloads are not dropped: they are
yours).

`ImageTextDoc` is the "document with both", composed of the two standard
documents the way docarray composes multimodal documents
(`class MultiModalDoc(BaseDoc): image: ImageDoc; text: TextDoc`).
"""

# No `from __future__ import annotations`: pydantic/docarray resolve these annotations at class creation.

import logging
from typing import Any, List, Optional, Sequence, Union

from docarray import BaseDoc
from docarray.documents import ImageDoc, TextDoc
from docarray.typing import AnyEmbedding
from pydantic import Field

from .errors import doc_name
from .pipeline import Item

#: The endpoints of `MLCLEncoder(documents="docarray")` (method names); remap them with
#: `uses_requests` (e.g. `{/search: encode_text_docs}` for a Flow that searches with TextDoc).
DOCARRAY_ENDPOINTS = {"/index": "encode_image_docs", "/search": "encode_query_docs"}


class ImageTextDoc(BaseDoc):
    """A composed query of standard documents: a reference image and a modifier text (either may be absent)."""

    image: Optional[ImageDoc] = Field(None, description="the reference image (tensor, bytes_ or url)")
    text: Optional[TextDoc] = Field(None, description="the modifier, e.g. TextDoc(text='make it red')")
    embedding: Optional[AnyEmbedding] = Field(None, description="the query vector (set by the encoder)")


StandardDoc = Union[ImageDoc, TextDoc, ImageTextDoc]


def image_value(doc: Optional[ImageDoc]) -> Any:
    """The image of an ImageDoc as our `image` field takes it: tensor, else bytes_, else url (as a str)."""
    if doc is None:
        return None
    if doc.tensor is not None:
        return doc.tensor
    if doc.bytes_ is not None:
        return bytes(doc.bytes_)
    if doc.url is not None:
        return str(doc.url)
    return None


def items(docs: Sequence[StandardDoc]) -> List[Item]:
    """Pipeline items of standard documents: an ImageTextDoc is a composed query, a TextDoc text only,
    an ImageDoc an image (a gallery image, or an image-only query)."""
    out = []
    for i, doc in enumerate(docs):
        if isinstance(doc, ImageTextDoc):
            image, text = image_value(doc.image), doc.text.text if doc.text is not None else None
        elif isinstance(doc, TextDoc):
            image, text = None, doc.text
        elif isinstance(doc, ImageDoc):
            image, text = image_value(doc), None
        else:
            raise TypeError(f"not a standard document: {type(doc).__name__} (expected ImageDoc, TextDoc or ImageTextDoc)")
        out.append(Item(doc_name(doc.id, i), image, text))
    return out


def answer(docs: Sequence[StandardDoc], results: Sequence[Item], logger: Any = logging.getLogger("mlcl")) -> None:
    """Each document's `embedding`; standard documents have no `error` field, so a failure is logged, naming the document."""
    for doc, item in zip(docs, results):
        doc.embedding = item.embedding
        if item.error:
            logger.warning(f"MLCLEncoder: not encoded: {item.error}")


__all__ = ["DOCARRAY_ENDPOINTS", "ImageDoc", "ImageTextDoc", "TextDoc", "answer", "image_value", "items"]
