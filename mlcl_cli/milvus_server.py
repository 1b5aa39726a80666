"""A Milvus Lite server of `mlcl serve`'s own, for a Flow whose Milvus indexer replicas name no server.

`flows/flow.milvus.yml` runs indexer *replicas* in front of one Milvus collection. With
a server (`$MLCL_MILVUS_URI` or `milvus.uri: http://...`) they share it. Without one
(`milvus.uri: null`, or a `.db` file), each replica would open Milvus Lite on the file
itself, and Milvus Lite opens a file in one process only. So `mlcl serve` starts one
Milvus Lite server on that file (default `<workspace>/milvus/milvus.db`), listening on
a free port of 127.0.0.1, gives its address to the Flow's processes as
`$MLCL_MILVUS_URI`, and stops it with the Flow. (Milvus Lite also stops by itself when
the process that started it ends: it watches a lock that process holds.)
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

#: How long the Milvus Lite server may take to answer after its start.
START_TIMEOUT_S = 60.0


def milvus_indexers(config: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
    """The executors of a Flow config whose index backend is milvus (set in `uses_with` or in their YAML's `with`)."""
    import yaml

    for executor in config.get("executors", []):
        with_ = dict(executor.get("uses_with") or {})
        uses = str(executor.get("uses", ""))
        if "backend" not in with_ and uses.endswith((".yml", ".yaml")) and Path(uses).is_file():
            own = (yaml.safe_load(Path(uses).read_text()) or {}).get("with") or {}
            with_ = {**own, **with_, "milvus": {**(own.get("milvus") or {}), **(with_.get("milvus") or {})}}
        if with_.get("backend") == "milvus":
            yield {"name": executor.get("name", "indexer"), "replicas": int(executor.get("replicas", 1) or 1),
                   "milvus": dict(with_.get("milvus") or {})}


def lite_file_to_serve(config: Dict[str, Any], workspace: Path) -> Optional[Path]:
    """The Milvus Lite file `mlcl serve` should serve for this Flow, or None (a server is named, or one indexer
    process can open the file itself)."""
    from mlcl_executor.stores.milvus import URI_ENV, is_server_uri

    if os.environ.get(URI_ENV):
        return None
    for indexer in milvus_indexers(config):
        uri = indexer["milvus"].get("uri")
        if indexer["replicas"] > 1 and not (uri and is_server_uri(str(uri))):
            return Path(os.path.expanduser(str(uri))).resolve() if uri else Path(workspace).resolve() / "milvus" / "milvus.db"
    return None


def lite_problems(config: Dict[str, Any], db_file: Path) -> List[str]:
    """What keeps `mlcl serve` from serving `db_file` with Milvus Lite for this Flow (one line each)."""
    try:
        import milvus_lite  # noqa: F401
        import pymilvus  # noqa: F401
    except ImportError:
        return ["the Flow's indexer uses Milvus and the milvus extra is not installed: pip install 'mlcl[milvus]' "
                "(or set MLCL_MILVUS_URI to your Milvus server)"]
    from mlcl_executor.stores.milvus import check_lite_index, index_type_of, milvus_options

    problems = []
    for indexer in milvus_indexers(config):
        try:
            check_lite_index(index_type_of(milvus_options(indexer["milvus"]), lite=True), str(db_file))
        except ValueError as exc:
            problems.append(f"{indexer['name']}: {exc}")
    return problems


class LiteServer:
    """Milvus Lite serving `db_file` on 127.0.0.1:<free port> (`uri`), until `stop`."""

    def __init__(self, db_file: Path) -> None:
        self.db_file = Path(db_file)
        self.server: Any = None
        self.uri: Optional[str] = None

    def start(self) -> str:
        """Start the server and wait until it answers; its URI. RuntimeError (one line) when it does not."""
        import warnings

        from mlcl_cli.flows import free_port

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # milvus-lite imports the deprecated pkg_resources
            from milvus_lite.server import Server
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.server = Server(str(self.db_file), f"127.0.0.1:{port}")
        if not (self.server.init() and self.server.start()):
            self.server = None
            raise RuntimeError(f"Milvus Lite did not start on {self.db_file} (is another process serving that file?)")
        self.uri = f"http://127.0.0.1:{port}"
        self._wait()
        return self.uri

    def _wait(self) -> None:
        from mlcl_executor.stores.milvus import connect

        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                connect(self.uri, timeout=5).close()  # type: ignore[arg-type]
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"Milvus Lite on {self.db_file} did not answer within {START_TIMEOUT_S:.0f} s "
                                       f"({str(exc).splitlines()[0][:120]})") from None
                time.sleep(0.3)

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            with contextlib.suppress(Exception):
                server.stop()


__all__ = ["LiteServer", "lite_file_to_serve", "lite_problems", "milvus_indexers"]
