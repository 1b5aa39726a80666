"""Gallery thumbnails as files in the indexer's workspace, so that no vector store holds them in memory.

The encoder makes a thumbnail of each gallery image (`thumbnails.py`, a data URI
of a few KB for a photo) and sends it in the document's tags; a store that
kept it there would hold it in RAM beside the vector (several times the
vector's size). The indexer of a workspace store (`memory`, `hnsw`) takes it
out of the tags before the store sees the row and writes it here instead, one
file per gallery id: `thumbnails/<2 hex>/<sha256 of the id>` holding the data
URI's text. Reading one costs a file open; memory holds none of them.

Writes follow the store's: after the store acknowledged the row (a failed
write leaves no file behind), fsync'ed when the store's `persistence.fsync` is
on; an upsert without a thumbnail removes the id's file (the tags it replaces
are gone too); deletes and `/clear` remove them. A crash between the store's
write and the file's leaves a document without a thumbnail (the page shows
"no thumbnail"), never a thumbnail of another image.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Dict, Iterable, List, Optional

FOLDER = "thumbnails"


class ThumbnailFiles:
    """id -> data URI, one small file per id under `<workspace>/thumbnails/`."""

    def __init__(self, workdir: Path, fsync: bool = True) -> None:
        self.folder = Path(workdir) / FOLDER
        self.fsync = bool(fsync)

    def path(self, doc_id: str) -> Path:
        digest = hashlib.sha256(doc_id.encode("utf-8")).hexdigest()
        return self.folder / digest[:2] / digest[2:]

    def write(self, thumbnails: Dict[str, Optional[str]]) -> None:
        """Write each id's thumbnail (None: remove the id's file)."""
        any_stored = self.folder.is_dir()  # none ever written (a gallery of bulk vectors): nothing to remove
        for doc_id, uri in thumbnails.items():
            if uri is None:
                if any_stored:
                    self.path(doc_id).unlink(missing_ok=True)
                continue
            path = self.path(doc_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "w", encoding="ascii", errors="replace") as f:
                f.write(uri)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)  # a reader sees the old thumbnail or the new one, never half of one

    def read(self, ids: Iterable[str]) -> List[Optional[str]]:
        """Each id's thumbnail, or None."""
        out: List[Optional[str]] = []
        for doc_id in ids:
            try:
                out.append(self.path(doc_id).read_text(encoding="ascii", errors="replace"))
            except FileNotFoundError:
                out.append(None)
        return out

    def delete(self, ids: Iterable[str]) -> None:
        for doc_id in ids:
            self.path(doc_id).unlink(missing_ok=True)

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


__all__ = ["FOLDER", "ThumbnailFiles"]
