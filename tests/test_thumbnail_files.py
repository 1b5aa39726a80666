"""Thumbnails out of the stores' memory (mlcl_executor/thumbnail_files.py): a workspace index keeps them as files,
answers them by gallery id (`/thumbnails`, matches with `thumbnails: true`), and the gateway's route serves them."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from docarray import DocList

from mlcl_executor.errors import RequestError
from mlcl_executor.indexer import MLCLIndexer, shard_of
from mlcl_executor.merger import MLCLMerger
from mlcl_executor.schemas import GalleryDoc, QueryDoc
from mlcl_executor.thumbnail_files import ThumbnailFiles

D = 8


def make_indexer(path, backend="memory", shard_id=0, shards=1) -> MLCLIndexer:
    return MLCLIndexer(backend=backend, metas={"name": "indexer", "workspace": str(path)},
                       runtime_args={"shard_id": shard_id, "shards": shards, "name": "indexer"})


def thumb(i: int) -> str:
    return f"data:image/png;base64,{base64.b64encode(f'thumbnail of g{i}'.encode()).decode()}"


def gallery(n: int = 12, thumbnails: bool = True) -> DocList[GalleryDoc]:
    rng = np.random.default_rng(0)
    return DocList[GalleryDoc]([GalleryDoc(id=f"g{i}", embedding=rng.normal(size=D).astype(np.float32),
                                           tags={"n": i, **({"thumbnail": thumb(i)} if thumbnails else {})})
                                for i in range(n)])


def stored_tags(indexer: MLCLIndexer, ids):
    return [hit[1] for hit in indexer.store.lookup(ids)]


def thumbnails_of(indexer: MLCLIndexer, ids):
    out = indexer.thumbnail_lookup(DocList[GalleryDoc]([GalleryDoc(id=i) for i in ids]))
    return [d.tags.get("thumbnail") for d in out], [d.error for d in out]


@pytest.mark.parametrize("backend", ["memory", "hnsw"])
def test_thumbnails_live_in_workspace_files_not_in_the_store(tmp_path, backend):
    indexer = make_indexer(tmp_path, backend)
    indexer.index(gallery())
    assert all(tags == {"n": i} for i, tags in enumerate(stored_tags(indexer, [f"g{i}" for i in range(12)])))
    assert indexer.thumbnails.folder.is_relative_to(tmp_path)
    assert sum(f.is_file() for f in indexer.thumbnails.folder.rglob("*")) == 12
    got, errors = thumbnails_of(indexer, ["g3", "g11", "nope"])
    assert got == [thumb(3), thumb(11), None] and errors[:2] == [None, None] and "'nope' has no thumbnail" in errors[2]
    # matches carry them when asked, from the files
    q = DocList[QueryDoc]([QueryDoc(id="q", embedding=np.asarray(gallery()[5].embedding))])
    hits = indexer.search(q, parameters={"limit": 3, "thumbnails": True})[0].matches
    assert hits[0].id == "g5" and all(m.tags["thumbnail"] == thumb(int(m.id[1:])) for m in hits)
    q = DocList[QueryDoc]([QueryDoc(id="q", embedding=np.asarray(gallery()[5].embedding))])
    assert all("thumbnail" not in m.tags for m in indexer.search(q, parameters={"limit": 3})[0].matches)
    # a restart keeps them; an upsert without one drops the old one; deletes and clear remove them
    indexer.close()
    indexer = make_indexer(tmp_path, backend)
    assert thumbnails_of(indexer, ["g3"])[0] == [thumb(3)]
    indexer.index(gallery(2, thumbnails=False))
    assert thumbnails_of(indexer, ["g0", "g1", "g2"])[0] == [None, None, thumb(2)]
    indexer.delete(DocList[GalleryDoc]([GalleryDoc(id="g2")]))
    assert not indexer.thumbnails.path("g2").exists()
    indexer.clear(DocList[GalleryDoc]())
    assert thumbnails_of(indexer, ["g4"])[0] == [None] and not indexer.thumbnails.folder.exists()
    indexer.close()


def test_a_refused_write_leaves_no_thumbnail_behind(tmp_path):
    indexer = make_indexer(tmp_path)
    indexer.index(gallery(2))
    bad = gallery(4)
    bad[3].embedding = np.zeros(D, np.float32)  # all zero: the whole request is refused
    bad[2].tags["thumbnail"] = "data:image/png;base64,bmV3"
    with pytest.raises(RequestError):
        indexer.index(bad)
    assert thumbnails_of(indexer, ["g2", "g3"])[0] == [None, None]


def test_shards_answer_the_thumbnails_they_own(tmp_path):
    shards = [make_indexer(tmp_path / str(s), "memory", s, 2) for s in range(2)]
    for ix in shards:
        ix.index(gallery())
    ids = [f"g{i}" for i in range(12)]
    answers = [ix.thumbnail_lookup(DocList[GalleryDoc]([GalleryDoc(id=i) for i in ids])) for ix in shards]
    for s, answer in enumerate(answers):
        assert all(bool(d.tags) == (shard_of(d.id, 2) == s) for d in answer)
    merged = MLCLMerger().merge_lookup(docs_matrix=answers)
    assert [d.tags["thumbnail"] for d in merged] == [thumb(i) for i in range(12)]


def test_thumbnail_files_replace_atomically(tmp_path):
    files = ThumbnailFiles(tmp_path, fsync=False)
    files.write({"a/b.png": "data:image/png;base64,AAAA", "c": "data:image/jpeg;base64,BBBB"})
    assert files.read(["a/b.png", "c", "d"]) == ["data:image/png;base64,AAAA", "data:image/jpeg;base64,BBBB", None]
    files.write({"c": None})
    assert files.read(["c"]) == [None] and not list(files.folder.rglob("*.tmp"))
