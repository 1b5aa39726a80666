"""Start a Flow for a person at a terminal: checks first, a quiet log, a clean stop.

Used by `mlcl serve` and `mlcl demo`. What it guarantees:

- `preflight()` checks what is cheap to check before any process starts (the
  checkpoint file, the workspace's index against the configured backend and
  against the encoder's model (workspace_model.py), the ports, the services
  the Flow's Executors need: a docker daemon, a Milvus server) and returns one
  line per problem.
- `quiet()` keeps a healthy start to our own lines: jina logs only errors, and
  the known third-party warnings are filtered by message, one by one
  (`--verbose` skips all of this).
- `supervised()` runs a Flow so that a start that fails ends the process within
  seconds with one line and no child left behind (jina's own abort path waits
  on a gateway that retries forever), a signal before the Flow is ready ends it
  at once, and SIGTERM or one Ctrl-C stops a running Flow and every child within
  a bounded time.

The torch gate (`keep_model_out`) is `mlcl_executor.torch_gate`: the Flow's own
processes need it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from mlcl.checkpoint_header import checkpoint_problem
from mlcl.known_warnings import silence_known_warnings
from mlcl_executor.jina_patches.flow_start import AbortWatch, no_banner

from .flows import quiet_jina

#: How long a stop may take before the children are killed (SIGTERM/Ctrl-C must end within 10 s).
STOP_GRACE_S = 6.0


class FlowStartError(RuntimeError):
    """The Flow could not start (the message says why, on one line); every process it started is stopped."""


def quiet() -> None:
    """Our lines only: jina logs errors, known third-party warnings are filtered (inherited by children)."""
    os.environ.setdefault("JINA_LOG_LEVEL", "ERROR")
    # gRPC's C core prints its own info lines (GOAWAY on shutdown) unless told its level
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    quiet_jina()
    silence_known_warnings()


# ----------------------------------------------------------------- preflight
def listening(ports: List[int]) -> Dict[int, List[str]]:
    """The addresses that listen on each of `ports` on this machine ("127.0.0.1", "0.0.0.0", "::"), as bound."""
    import psutil

    found: Dict[int, List[str]] = {int(p): [] for p in ports}
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port in found:
                ip = conn.laddr.ip[len("::ffff:"):] if conn.laddr.ip.startswith("::ffff:") else conn.laddr.ip
                if ip not in found[conn.laddr.port]:
                    found[conn.laddr.port].append(ip)
    return found


def reach(addresses: List[str]) -> str:
    """Who can reach a port bound to `addresses`: this machine only, or the network."""
    if not addresses:
        return "not listening"
    local = all(a.startswith("127.") or a == "::1" for a in addresses)
    return "this machine only" if local else "every interface: other machines too"


def write_token_problem(config: Dict[str, Any]) -> "tuple[bool, Optional[str]]":
    """(whether the Flow's gateway will require a write token, the one-line reason it cannot start, or None)."""
    from mlcl_executor.write_token import TokenError, configured_token

    gateway = config.get("gateway") if isinstance(config.get("gateway"), dict) else {}
    token_file = (gateway.get("uses_with") or {}).get("write_token_file")
    try:
        return configured_token(token_file) is not None, None
    except TokenError as exc:
        return False, str(exc)


def port_in_use(port: int, host: str = "0.0.0.0") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, int(port)))
        except OSError:
            return True
    return False


def check_workspace(workspace: Path, backend: Optional[str]) -> List[str]:
    """Indexes under `workspace` that the configured backend cannot open (one line each)."""
    problems = []
    if workspace.exists() and not workspace.is_dir():
        return [f"workspace {workspace} is not a folder"]
    for meta in sorted(workspace.glob("**/mlcl-index.json")) if workspace.is_dir() else []:
        try:
            stored = json.loads(meta.read_text())["backend"]
        except (OSError, ValueError, KeyError):
            problems.append(f"workspace {meta.parent} has an unreadable {meta.name}")
            continue
        if backend and backend != "milvus" and stored != backend:  # milvus keeps nothing in the workspace
            problems.append(
                f"workspace {meta.parent} holds a {stored!r} index but --backend {backend} was asked for "
                f"(use another --workspace, or the {stored!r} backend)"
            )
    return problems


def check_model(workspace: Path, checkpoint: Path) -> List[str]:
    """Indexes under `workspace` whose vectors are of another model than `checkpoint` (one line each, with the way out)."""
    from mlcl.model_id import checkpoint_id
    from mlcl_executor.workspace_model import workspace_models

    try:
        recorded = workspace_models(workspace)
    except ValueError as exc:
        return [str(exc)]
    encoder = checkpoint_id(checkpoint) if recorded else None
    return [
        f"workspace {folder} holds vectors of model {model} and the encoder's model is {encoder} ({checkpoint.name}): "
        f"serve model {model} on it, or give this model a new --workspace, or re-encode the gallery with it: "
        f"mlcl index --reindex --workspace {workspace} --checkpoint {checkpoint}"
        for folder, model in recorded.items() if model != encoder
    ][:1]  # one line: every shard says the same


def answers(host: str, port: int, timeout: float = 3.0) -> bool:
    """Whether something accepts a TCP connection at host:port."""
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def service_problems(config: Dict[str, Any]) -> List[str]:
    """Services the Flow's Executors need that do not answer (one line each): a docker daemon for
    `docker://` Executors, the Milvus server a `milvus` indexer names."""
    import urllib.parse

    from mlcl_executor.stores.milvus import URI_ENV, is_server_uri

    problems = []
    images = [str(e["uses"]) for e in config.get("executors", []) if str(e.get("uses", "")).startswith("docker://")]
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if images and host.startswith("unix://") and not Path(host[len("unix://"):]).exists():  # tcp/ssh: left to docker
        problems.append(f"the Flow runs Executors in docker images ({', '.join(sorted(set(images)))}) and no docker "
                        f"daemon is reachable here (no {host[len('unix://'):]}); flows/flow.docker.yml is meant for "
                        "`jina export` (docs/serving.md)")
    for executor in config.get("executors", []):
        with_ = executor.get("uses_with") or {}
        uri = os.environ.get(URI_ENV) or (with_.get("milvus") or {}).get("uri")
        if with_.get("backend") == "milvus" and uri and is_server_uri(str(uri)):
            url = urllib.parse.urlsplit(str(uri))
            if not answers(url.hostname or "localhost", url.port or 19530):
                problems.append(f"no Milvus server answers at {uri} (the {executor.get('name', 'indexer')}'s milvus.uri; "
                                f"set ${URI_ENV} to your server, or milvus.uri: null and mlcl serve starts Milvus Lite)")
    return problems


def preflight(checkpoint: Optional[Path], workspace: Path, backend: Optional[str], ports: Dict[str, int],
              config: Optional[Dict[str, Any]] = None) -> List[str]:
    """Every problem found before starting anything, one line each (empty: go). `config`: the Flow's (flows.flow_config)."""
    problems = []
    if checkpoint is not None:
        why = checkpoint_problem(checkpoint)
        if why:
            problems.append(why)
    problems += check_workspace(workspace, backend)
    if checkpoint is not None and not problems:
        problems += check_model(workspace, checkpoint)
    if config:
        problems += [p for p in [write_token_problem(config)[1]] if p]
    for protocol, port in ports.items():
        if port_in_use(port):
            problems.append(f"{protocol} port {port} is in use (another `mlcl serve`? choose one with --{protocol}-port)")
    return problems + (service_problems(config) if config else [])


# ------------------------------------------------------------- supervision
#: Processes of Python's multiprocessing machinery: shared by every Flow of a process, never ours to stop.
_INFRASTRUCTURE = ("multiprocessing.forkserver", "multiprocessing.resource_tracker", "multiprocessing.semaphore_tracker")


def descendants() -> List[Any]:
    """Every process below this one (psutil processes)."""
    import psutil

    return psutil.Process().children(recursive=True)


class FlowProcesses:
    """The processes a Flow start creates: descendants that were not there before, less multiprocessing's own.

    With jina's default (fork) they are children of this process; with a fork
    server (as in the tests) grandchildren. Anything that was running before,
    e.g. another Flow of the same process, is left alone.
    """

    def __init__(self) -> None:
        self.before = {p.pid for p in descendants()}

    def current(self) -> List[Any]:
        import psutil

        found = []
        for p in descendants():
            if p.pid in self.before:
                continue
            with contextlib.suppress(psutil.Error):
                if not any(name in " ".join(p.cmdline()) for name in _INFRASTRUCTURE):
                    found.append(p)
        return found


def kill_processes(procs: List[Any], grace: float = 2.0) -> None:
    """SIGTERM each process, then SIGKILL what is left after `grace` seconds."""
    import psutil

    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=grace)


def _say(message: str) -> None:
    """One line on stderr; a closed or full pipe must not keep this process alive."""
    with contextlib.suppress(OSError, ValueError):
        print(message, file=sys.stderr, flush=True)


def _watch_start(prog: str, watch: AbortWatch, ready: threading.Event, flow_procs: "FlowProcesses") -> None:
    """Until the Flow is ready: jina's abort ends everything now (its own abort path then
    waits on a gateway that retries forever)."""
    while not ready.is_set():
        if watch.aborted.wait(0.3):
            break
    else:
        return
    _say(f"{prog}: the Flow could not start: {watch.reason}; the error above says why")
    kill_processes(flow_procs.current())
    os._exit(1)


@contextlib.contextmanager
def supervised(
    flow: Any, prog: str, show_jina_banner: bool = False, interrupt: bool = False
) -> Iterator[threading.Event]:
    """Start `flow`; yield an event that SIGTERM/SIGINT set; stop it and every child afterwards.

    `interrupt`: the first signal also raises KeyboardInterrupt in the main thread
    (for work that does not wait on the event, e.g. the demo).
    A start that fails ends the process (exit 1) with one line. A signal before the
    Flow is ready ends it at once (nothing to stop gracefully yet). A stop that takes
    longer than STOP_GRACE_S kills the children and ends the process (exit 0).
    """
    # The Flow's processes are forked from this one and inherit its stdout: line by line,
    # so that what a failing child logs is written before it is stopped (a pipe or a file
    # would otherwise hold it in a buffer that dies with the child).
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    stop, ready = threading.Event(), threading.Event()
    flow_procs = FlowProcesses()
    watch = AbortWatch(flow)
    threading.Thread(target=_watch_start, args=(prog, watch, ready, flow_procs), daemon=True).start()

    def on_signal(signum: int, frame: Any) -> None:
        code = 130 if signum == signal.SIGINT else 143
        if not ready.is_set():  # still starting (or failing to): jina's start would not return for it
            _say(f"{prog}: stopped before the Flow was ready")
            kill_processes(flow_procs.current(), grace=0.5)
            os._exit(code)
        if stop.is_set():  # a second signal: stop now
            kill_processes(flow_procs.current(), grace=0.5)
            os._exit(code)
        stop.set()
        if interrupt:
            raise KeyboardInterrupt

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            with contextlib.nullcontext() if show_jina_banner else no_banner():
                flow.start()
        except Exception as exc:  # jina raised instead of logging its abort (e.g. no docker daemon for an image)
            ready.set()  # no abort to watch for any more
            kill_processes(flow_procs.current())
            raise FlowStartError(f"the Flow could not start: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
        ready.set()
        yield stop
    finally:
        _stop_within(flow, prog, flow_procs)
        for s, handler in previous.items():
            signal.signal(s, handler)


def _stop_within(flow: Any, prog: str, flow_procs: "FlowProcesses") -> None:
    done = threading.Event()

    def close() -> None:
        with contextlib.suppress(Exception):
            flow.close()
        done.set()

    threading.Thread(target=close, daemon=True).start()
    if not done.wait(STOP_GRACE_S):
        _say(f"{prog}: the Flow did not stop in {STOP_GRACE_S:.0f} s; stopping its processes")
    kill_processes(flow_procs.current())


__all__ = [
    "FlowProcesses", "FlowStartError", "answers", "check_workspace", "descendants", "kill_processes", "listening",
    "port_in_use", "preflight", "quiet", "reach", "service_problems", "supervised", "write_token_problem",
]
