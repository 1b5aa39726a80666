"""A vector store in Milvus: the database owns the vectors, their persistence and their scale.

Same contract as the local stores (`base.py`): upsert rows {id, embedding,
uri, tags} by id, delete by id, `search` -> per query (Match, cosine
similarity) best first, `count`, `clear`, `close`; request search options
`nprobe` and `ef` go to Milvus's search parameters. Unlike them it keeps no
state in the Executor's workspace, so every indexer process (replicas, or
several Flows) can point at one collection.

Where the data lives is `uri` (or `$MLCL_MILVUS_URI`, which replaces it when set):
- a local file path ending in `.db` (the default, `<workspace>/milvus.db`):
  Milvus Lite, the Milvus engine embedded in the `milvus-lite` package,
  started by pymilvus in a child process of the indexer. One process at a
  time may open a file (Milvus Lite locks it): no replicas on a file.
- `http://host:19530` / `https://...`: a Milvus standalone or distributed
  cluster (or Zilliz Cloud), with `token` ("user:password" or an API key;
  or `$MLCL_MILVUS_TOKEN`) and `db_name` where the server needs them.

Collection layout: `id` VARCHAR primary key, `embedding` FLOAT_VECTOR(dim),
`uri` VARCHAR ("" for none: Milvus Lite has no nullable fields), `tags` JSON;
the vector index uses the COSINE metric, whose scores are already cosine
similarities (higher is better). `index_type`/`index_params` configure the
index (default: FLAT, exact, on Milvus Lite, which builds only FLAT, IVF_FLAT
and AUTOINDEX and ignores the search parameters of the last two; AUTOINDEX on
a server, which also builds HNSW, IVF_PQ, DISKANN, ...), `search_params` the
search (e.g. `nprobe`, `ef`).
Reads use `consistency_level` (default Strong: a search sees every write
acknowledged before it, from any replica).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import uuid
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..filters import Filter
from ..params import param_int
from .base import Batch, Hits, Match, VectorStore
from .milvus_filter import LITE, SERVER, Dialect, milvus_filter

logger = logging.getLogger(__name__)

ID_MAX_LENGTH = 512
URI_MAX_LENGTH = 4096
#: Options of `backend: milvus` (the indexer's `milvus:` section) and their defaults.
DEFAULTS: Dict[str, Any] = {
    "uri": None,  # None: <workspace>/milvus.db (Milvus Lite)
    "token": None,
    "db_name": None,
    "collection": "mlcl_gallery",
    "index_type": None,  # None: FLAT on Milvus Lite, AUTOINDEX on a server (see LITE_INDEX_TYPES)
    "index_params": {},
    "search_params": {},
    "consistency_level": "Strong",
    "timeout": 30.0,
    "write_batch": 2000,
}
LITE_INDEX_TYPES = ("FLAT", "IVF_FLAT", "AUTOINDEX")
# Milvus Lite 2.5.1 ignores the search parameters of its IVF_FLAT and AUTOINDEX indexes (nprobe 1 to 1024
# gave the same recall@10, 0.50 on 100k uniform vectors, 0.72 on the benchmark's structured ones): on a
# file, only FLAT (exact) is trustworthy, so it is the default there (docs/performance.md).
_lite_users: Dict[str, int] = {}  # Milvus Lite file -> open stores in this process (its server is shared)


def milvus_options(options: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """`options` over the defaults; an unknown key is an error that names the known ones."""
    options = dict(options or {})
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown milvus options {sorted(unknown)}; choose from {sorted(DEFAULTS)}")
    merged = {**DEFAULTS, **options}
    merged["index_params"] = dict(merged["index_params"] or {})
    merged["search_params"] = dict(merged["search_params"] or {})
    return merged


URI_ENV = "MLCL_MILVUS_URI"  # when set, replaces milvus.uri (one Flow file for every environment)
TOKEN_ENV = "MLCL_MILVUS_TOKEN"  # the token when milvus.token is not set (keeps secrets out of YAML)


def resolve_uri(uri: Optional[str], workdir: Optional[Path]) -> str:
    """The URI pymilvus connects to: $MLCL_MILVUS_URI or `uri`; a server URL as given, a file made absolute."""
    uri = os.environ.get(URI_ENV) or uri
    if uri is None:
        if workdir is None:
            raise ValueError("backend milvus: set milvus.uri (a .db file or a server URL), or give the indexer a workspace")
        return str(Path(workdir) / "milvus.db")
    uri = str(uri)
    if is_server_uri(uri):
        return uri
    path = Path(os.path.expanduser(uri))
    if not path.is_absolute() and workdir is not None:
        path = Path(workdir) / path  # relative files live in the workspace, like the other stores
    return str(path.absolute())


def is_server_uri(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "tcp://", "grpc://", "unix:"))


def _client_class():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # milvus-lite imports the deprecated pkg_resources
            from pymilvus import MilvusClient
    except ImportError as exc:  # an optional dependency: say how to get it
        raise ImportError(
            f"backend milvus needs pymilvus and milvus-lite ({exc}); install them with: pip install 'mlcl[milvus]'"
        ) from exc
    return MilvusClient


def connect(uri: str, token: Optional[str] = None, db_name: Optional[str] = None, timeout: float = 30.0) -> Any:
    """A MilvusClient for `uri` (starting Milvus Lite for a file), with errors that name the URI."""
    MilvusClient = _client_class()
    kwargs: Dict[str, Any] = {"uri": uri, "timeout": timeout}
    if token:
        kwargs["token"] = token
    if db_name:
        kwargs["db_name"] = db_name
    if not is_server_uri(uri):
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    try:
        return MilvusClient(**kwargs)
    except Exception as exc:
        hint = (
            " (Milvus Lite opens a file in one process only: for replicas or several Flows, run a Milvus server "
            "and set milvus.uri to its URL)" if not is_server_uri(uri) else " (is the server up and the token right?)"
        )
        raise ConnectionError(f"backend milvus: cannot open {uri}: {exc}{hint}") from exc


def collection_dim(client: Any, collection: str) -> Optional[int]:
    """The vector width of an existing collection, or None when there is none."""
    if not client.has_collection(collection):
        return None
    for f in client.describe_collection(collection)["fields"]:
        if f["name"] == "embedding":
            return int(f["params"]["dim"])
    raise ValueError(f"backend milvus: collection {collection!r} exists but has no 'embedding' field (not an mlcl collection)")


def server_version(client: Any, timeout: float = 10.0) -> Optional[str]:
    """The Milvus server's version ("v2.5.4"), or None for Milvus Lite, which does not implement the call."""
    quiet = logging.getLogger("pymilvus")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # pymilvus logs Milvus Lite's "unimplemented" as an error
    try:
        return str(client.get_server_version(timeout=timeout))
    except Exception:
        return None
    finally:
        quiet.setLevel(level)


def index_type_of(options: Dict[str, Any], lite: bool) -> str:
    """The configured index type, or the default: FLAT (exact) on Milvus Lite, AUTOINDEX on a server."""
    return str(options["index_type"] or ("FLAT" if lite else "AUTOINDEX")).upper()


def check_lite_index(index_type: str, uri: str) -> None:
    if index_type not in LITE_INDEX_TYPES:
        raise ValueError(
            f"backend milvus: index_type {index_type!r} needs a Milvus server; Milvus Lite ({uri}) builds only "
            f"{', '.join(LITE_INDEX_TYPES)} (set milvus.index_type, or MLCL_MILVUS_URI to a server)"
        )


def probe_index(client: Any, index_type: str, index_params: Dict[str, Any], timeout: float) -> Optional[str]:
    """Why the target cannot build `index_type` with `index_params` (None: it can): a throw-away collection tries."""
    from pymilvus import DataType, MilvusClient

    name = f"mlcl_probe_{uuid.uuid4().hex[:12]}"
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=16)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=8)
    index = MilvusClient.prepare_index_params()
    index.add_index("embedding", index_type=index_type, metric_type="COSINE", params=dict(index_params))
    quiet = logging.getLogger("pymilvus")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # the failure is ours to report, in one line
    try:
        client.create_collection(name, schema=schema, index_params=index, timeout=timeout)
        return None
    except Exception as exc:
        return str(getattr(exc, "message", None) or exc).splitlines()[0]
    finally:
        with contextlib.suppress(Exception):
            if client.has_collection(name, timeout=timeout):
                client.drop_collection(name, timeout=timeout)
        quiet.setLevel(level)


def inspect_target(workdir: Optional[Path], options: Optional[Dict[str, Any]]) -> Optional[int]:
    """At the indexer's start: the width of the configured collection if it exists (the database, not the
    workspace, knows it), after checking that the target can build the configured index (ValueError names
    what to set). Milvus Lite builds only `LITE_INDEX_TYPES`; a server is asked by a throw-away collection."""
    opts = milvus_options(options)
    uri = resolve_uri(opts["uri"], workdir)
    if not is_server_uri(uri) and not Path(uri).exists():
        check_lite_index(index_type_of(opts, lite=True), uri)
        return None  # no Milvus Lite file yet: nothing stored
    client = connect(uri, opts["token"] or os.environ.get(TOKEN_ENV), opts["db_name"], float(opts["timeout"]))
    try:
        dim = collection_dim(client, str(opts["collection"]))
        if dim is None:
            lite = not is_server_uri(uri) or server_version(client) is None
            index_type = index_type_of(opts, lite)
            if lite:
                check_lite_index(index_type, uri)
            elif (why := probe_index(client, index_type, opts["index_params"], float(opts["timeout"]))) is not None:
                raise ValueError(f"backend milvus: {uri} cannot build index_type {index_type!r} with index_params "
                                 f"{opts['index_params']}: {why}")
        return dim
    finally:
        client.close()
        if not is_server_uri(uri) and uri not in _lite_users:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(uri)


def stored_dim(workdir: Optional[Path], options: Optional[Dict[str, Any]]) -> Optional[int]:
    """The width of the configured collection if it exists, else None (nothing stored yet)."""
    opts = milvus_options(options)
    uri = resolve_uri(opts["uri"], workdir)
    if not is_server_uri(uri) and not Path(uri).exists():
        return None  # no Milvus Lite file yet: nothing stored
    client = connect(uri, opts["token"] or os.environ.get(TOKEN_ENV), opts["db_name"], float(opts["timeout"]))
    try:
        return collection_dim(client, str(opts["collection"]))
    finally:
        client.close()
        if not is_server_uri(uri) and uri not in _lite_users:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(uri)


#: The collection beside `collection` that records its vectors' model id (one row, MODEL_ROW).
MODEL_SUFFIX = "__mlcl_model"
MODEL_ROW = "model"


class MilvusStore(VectorStore):
    """id -> (vector, uri, tags) in a Milvus collection, searched by cosine similarity."""

    name = "milvus"
    SEARCH_PARAMS = ("nprobe", "ef")

    def __init__(self, dim: int, workdir: Optional[Path], **options: Any):
        opts = milvus_options(options)
        super().__init__(dim, workdir)
        self.collection: str = str(opts["collection"])
        self.uri = resolve_uri(opts["uri"], workdir)
        self.local = not is_server_uri(self.uri)  # a file: Milvus Lite embedded in a child process
        self.index_params: Dict[str, Any] = opts["index_params"]
        self.search_params: Dict[str, Any] = opts["search_params"]
        self.consistency_level: str = str(opts["consistency_level"])
        self.timeout = float(opts["timeout"])
        self.write_batch = max(1, int(opts["write_batch"]))
        if self.local:
            check_lite_index(index_type_of(opts, lite=True), self.uri)
        self.client = connect(self.uri, opts["token"] or os.environ.get(TOKEN_ENV), opts["db_name"], self.timeout)
        if self.local:
            _lite_users[self.uri] = _lite_users.get(self.uri, 0) + 1
        try:
            # Milvus Lite also serves on a port (`mlcl serve --flow milvus` starts one): it is Lite by what it answers
            version = None if self.local else server_version(self.client, self.timeout)
            self.lite = version is None
            self.dialect = _dialect(version)
            self.index_type = index_type_of(opts, self.lite)
            if self.lite:
                check_lite_index(self.index_type, self.uri)
                if self.index_type != "FLAT":
                    logger.warning(f"milvus: {self.index_type} on Milvus Lite ignores its search parameters and may "
                                   "miss neighbours (recall@10 0.50-0.72 at 100k in docs/performance.md); FLAT is exact")
            existing = collection_dim(self.client, self.collection)
            if existing is None:
                self._create()
            elif existing != self.dim:
                raise ValueError(
                    f"backend milvus: collection {self.collection!r} at {self.uri} holds vectors of width {existing}, "
                    f"not {self.dim} (a different model needs its own collection)"
                )
            else:
                self.client.load_collection(self.collection, timeout=self.timeout)
        except BaseException:
            self.close()
            raise

    # --------------------------------------------------------------- schema
    def _create(self) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=ID_MAX_LENGTH)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("uri", DataType.VARCHAR, max_length=URI_MAX_LENGTH)
        schema.add_field("tags", DataType.JSON)
        index = MilvusClient.prepare_index_params()
        index.add_index("embedding", index_type=self.index_type, metric_type="COSINE", params=dict(self.index_params))
        self.client.create_collection(
            self.collection, schema=schema, index_params=index, consistency_level=self.consistency_level, timeout=self.timeout
        )
        logger.info(f"milvus: created collection {self.collection!r} (dim {self.dim}, {self.index_type}) at {self.uri}")

    # --------------------------------------------------------------- writes
    def upsert(self, rows: Sequence[Dict[str, Any]]) -> None:
        """Insert or replace by id; the whole request is validated (`Batch`) before anything is sent."""
        batch = Batch.from_rows(rows, self.dim)
        bad = [i for i in batch.ids if len(i.encode("utf-8")) > ID_MAX_LENGTH]
        bad += [f"{i} (uri)" for i, u in zip(batch.ids, batch.uris) if u and len(u.encode("utf-8")) > URI_MAX_LENGTH]
        if bad:
            raise ValueError(f"backend milvus: ids must be at most {ID_MAX_LENGTH} bytes and uris {URI_MAX_LENGTH}: "
                             + ", ".join(repr(b[:40]) for b in bad[:5]))
        entities = [{"id": i, "embedding": v, "uri": u or "", "tags": _json_safe(t)}
                    for i, v, u, t in zip(batch.ids, batch.vectors.tolist(), batch.uris, batch.tags)]
        for start in range(0, len(entities), self.write_batch):
            self.client.upsert(self.collection, entities[start : start + self.write_batch], timeout=self.timeout)

    def delete(self, ids: Sequence[str]) -> None:
        ids = [str(i) for i in ids]
        for start in range(0, len(ids), self.write_batch):
            self.client.delete(self.collection, ids=ids[start : start + self.write_batch], timeout=self.timeout)

    def clear(self) -> None:
        """Drop and recreate the collection (same width and index)."""
        self.client.drop_collection(self.collection, timeout=self.timeout)
        self._create()

    # -------------------------------------------------- the vectors' model
    # Which model's vectors the collection holds (workspace_model.py does this beside a local store): kept in the
    # database, beside the collection, so that every replica and every Flow on it reads the same record. A
    # one-row collection, because Milvus Lite implements no collection properties.
    @property
    def _model_collection(self) -> str:
        return f"{self.collection}{MODEL_SUFFIX}"

    def recorded_model(self) -> Optional[str]:
        """The model id recorded for this collection, or None."""
        if not self.client.has_collection(self._model_collection, timeout=self.timeout):
            return None
        rows = self.client.get(self._model_collection, ids=[MODEL_ROW], output_fields=["model"], timeout=self.timeout)
        return str(rows[0]["model"]) if rows else None

    def record_model(self, model_id: str) -> None:
        from pymilvus import DataType, MilvusClient

        if not self.client.has_collection(self._model_collection, timeout=self.timeout):
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=16)
            schema.add_field("model", DataType.VARCHAR, max_length=256)
            schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs a vector field in every collection
            index = MilvusClient.prepare_index_params()
            index.add_index("v", index_type="FLAT", metric_type="L2")
            self.client.create_collection(self._model_collection, schema=schema, index_params=index,
                                          consistency_level="Strong", timeout=self.timeout)
        self.client.upsert(self._model_collection, [{"id": MODEL_ROW, "model": str(model_id), "v": [1.0, 0.0]}],
                           timeout=self.timeout)

    def forget_model(self) -> None:
        if self.client.has_collection(self._model_collection, timeout=self.timeout):
            self.client.drop_collection(self._model_collection, timeout=self.timeout)

    # ---------------------------------------------------------------- reads
    def exists(self, doc_id: str) -> bool:
        return bool(self.client.get(self.collection, ids=[str(doc_id)], output_fields=["id"], timeout=self.timeout))

    def lookup(self, ids: Sequence[str]) -> List[Optional[Tuple[np.ndarray, Dict[str, Any]]]]:
        rows = self.client.get(self.collection, ids=[str(i) for i in ids], output_fields=["embedding", "tags"],
                               timeout=self.timeout) if ids else []
        found = {str(row["id"]): (np.asarray(row["embedding"], dtype=np.float32), dict(row.get("tags") or {})) for row in rows}
        return [found.get(str(doc_id)) for doc_id in ids]

    def count(self) -> int:
        res = self.client.query(
            self.collection, filter="", output_fields=["count(*)"], consistency_level=self.consistency_level, timeout=self.timeout
        )
        return int(res[0]["count(*)"]) if res else 0

    def check_params(self, params: Dict[str, Any]) -> Dict[str, Any]:
        """`nprobe` (IVF indexes) and `ef` (HNSW) from request parameters, over the configured `search_params`."""
        out = {}
        for key in self.SEARCH_PARAMS:
            value = param_int(params, key, low=1, high=65536)
            if value is not None:
                out[key] = value
        return out

    def search(self, queries: np.ndarray, limit: int, where: Optional[Filter] = None, **params: Any) -> Hits:
        """As `VectorStore.search`, without its count() (a round trip): Milvus returns what it holds."""
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be a matrix of width {self.dim}, got shape {queries.shape}")
        if limit <= 0 or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        return self._search(queries, int(limit), where=where, **self.check_params(params))

    def _search(self, queries: np.ndarray, limit: int, where: Optional[Filter] = None, **params: Any) -> Hits:
        expr, values = milvus_filter(where, self.dialect) if where is not None else ("", {})
        result = self.client.search(
            self.collection,
            data=queries.tolist(),
            filter=expr,
            limit=limit,
            output_fields=["uri", "tags"],
            search_params={"metric_type": "COSINE", "params": {**self.search_params, **params}},
            consistency_level=self.consistency_level,
            timeout=self.timeout,
            **({"filter_params": values} if values else {}),
        )
        out: Hits = []
        for hits in result:
            pairs = []
            for hit in hits:
                entity = hit.get("entity", {})
                match = Match(str(hit["id"]), entity.get("uri") or None, dict(entity.get("tags") or {}))
                pairs.append((match, float(hit["distance"])))  # COSINE: the "distance" is the similarity
            pairs.sort(key=lambda p: (-p[1], p[0].id))
            out.append(pairs)
        return out

    def close(self) -> None:
        """Close the connection (Milvus persists every acknowledged write itself)."""
        client, self.client = getattr(self, "client", None), None
        if client is None:
            return
        client.close()
        if self.local:
            # pymilvus leaves the Milvus Lite server running (and the file locked) until the process
            # exits; stop it when the last store on the file closes, so another process may open it.
            _lite_users[self.uri] -= 1
            if _lite_users[self.uri] <= 0:
                del _lite_users[self.uri]
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(self.uri)


def _dialect(version: Optional[str]) -> Dialect:
    """What a target accepts in a filter expression: a server of 2.5 or later takes templates and `not`;
    Milvus Lite (no version) and older servers get the subset without them."""
    numbers = [int(x) for x in re.findall(r"\d+", version or "")[:2]]
    return SERVER if len(numbers) == 2 and tuple(numbers) >= (2, 5) else LITE


def _json_safe(value: Any) -> Any:
    """Tags as plain JSON values (numpy scalars and arrays become numbers and lists)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return value


__all__ = [
    "DEFAULTS", "LITE_INDEX_TYPES", "MilvusStore", "check_lite_index", "collection_dim", "connect", "inspect_target",
    "milvus_options", "probe_index", "resolve_uri", "server_version", "stored_dim",
]
