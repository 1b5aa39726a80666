"""Shared helpers of the benchmark scripts: machine info, timing statistics, markdown tables, JSON results."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"

if str(REPO_ROOT) not in sys.path:  # `python bench/x.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))


def quiet_jina() -> None:
    os.environ.setdefault("JINA_OPTOUT_TELEMETRY", "1")
    os.environ.setdefault("JINA_HIDE_SURVEY", "1")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        commit = out.stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        return f"{commit}+dirty" if commit and dirty.stdout.strip() else commit
    except (OSError, subprocess.SubprocessError):
        return None


def _version(name: str) -> Optional[str]:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def load_average() -> Optional[List[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> Dict[str, Any]:
    """What a benchmark number depends on: CPU, cores, RAM, threads, library versions, date, commit, load."""
    import psutil

    info: Dict[str, Any] = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_1_5_15": load_average(),
        "git_commit": _git_commit(),
        "versions": {p: _version(p) for p in ("torch", "numpy", "docarray", "jina", "hnswlib", "open_clip_torch")},
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # torch missing: still report the rest
        info["torch_threads"] = None
    return info


def percentiles(values: Sequence[float], ps: Iterable[float] = (50, 95, 99)) -> Dict[str, float]:
    import numpy as np

    arr = np.asarray(list(values), dtype=np.float64)
    out = {f"p{int(p)}": float(np.percentile(arr, p)) for p in ps} if arr.size else {}
    if arr.size:
        out.update(mean=float(arr.mean()), min=float(arr.min()), max=float(arr.max()), n=int(arr.size))
    return out


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: numbers with `digits` significant digits, None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if abs(value) >= 10 ** digits:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[fmt(c) for c in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def machine_line(info: Dict[str, Any]) -> str:
    load = info.get("load_average_1_5_15")
    return (
        f"{info['cpu_model']}, {info['cpu_count']} cores, {info['ram_gb']} GB RAM, torch threads {info.get('torch_threads')}, "
        f"load avg {load[0] if load else '?'} (1 min) at start; {info['date']}; commit {info.get('git_commit')}"
    )


def write_results(name: str, payload: Dict[str, Any], out_dir: Optional[Path] = None, quick: bool = False) -> Path:
    """Write `bench/results/<name>.json` (`<name>.quick.json` in quick mode) with machine info; returns the path."""
    out_dir = Path(out_dir) if out_dir else RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / (f"{name}.quick.json" if quick else f"{name}.json")
    payload = dict(payload)
    payload.setdefault("benchmark", name)
    payload.setdefault("machine", machine_info())
    payload["machine"]["load_average_1_5_15_at_end"] = load_average()
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_json_default))
    os.replace(tmp, path)
    return path


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def release_memory() -> None:
    """gc + give freed heap back to the OS (glibc malloc_trim), so that RSS deltas measure live memory only."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss_bytes(release: bool = True) -> int:
    import psutil

    if release:
        release_memory()
    return psutil.Process().memory_info().rss


class Timer:
    """`with Timer() as t: ...; t.s` — wall seconds (perf_counter)."""

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        self.s = 0.0
        return self

    def __exit__(self, *exc: Any) -> None:
        self.s = time.perf_counter() - self.start


def progress(iterable: Any = None, **kwargs: Any) -> Any:
    """tqdm on stderr (disabled when stderr is not a terminal unless BENCH_PROGRESS=1)."""
    from tqdm import tqdm

    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    if "disable" not in kwargs:
        kwargs["disable"] = not (sys.stderr.isatty() or os.environ.get("BENCH_PROGRESS") == "1")
    return tqdm(iterable, **kwargs)


def timed_upserts(store: Any, ids: Sequence[str], x: Any, chunk: int, budget_s: float,
                  desc: str) -> Tuple[Dict[str, Any], float]:
    """Write row i of `x` (id `ids[i]`) into an indexer store in upserts of `chunk` rows, as the Executor does,
    until all are in or `budget_s` has passed. Returns (measurements, start time): how many were indexed and
    the upserts' times (first, last, and medians of the first and last 10: O(request) keeps those equal)."""
    import numpy as np

    n = len(ids)
    t_start = time.perf_counter()
    times: List[float] = []
    indexed = 0
    bar = progress(total=n, desc=desc, unit="doc")
    for start in range(0, n, chunk):
        rows = [{"id": ids[i], "embedding": x[i], "uri": None, "tags": {}} for i in range(start, min(n, start + chunk))]
        t0 = time.perf_counter()
        store.upsert(rows)
        times.append(time.perf_counter() - t0)
        indexed += len(rows)
        bar.update(len(rows))
        if time.perf_counter() - t_start > budget_s and indexed < n:
            break
    bar.close()
    return {"indexed": indexed, "chunk": chunk, "first_upsert_ms": times[0] * 1e3, "last_upsert_ms": times[-1] * 1e3,
            "upsert_ms_first10": float(np.median(times[:10])) * 1e3,
            "upsert_ms_last10": float(np.median(times[-10:])) * 1e3}, t_start


def build_time(res: Dict[str, Any], elapsed: float, n: int) -> None:
    """`build_s` in `res`: the measured time, or (a build stopped by its budget) extrapolated linearly to n."""
    if res["indexed"] < n:
        res.update(extrapolated=True, build_s_measured=elapsed, build_s=elapsed * n / res["indexed"])
    else:
        res["build_s"] = elapsed


def model_width(backbone: str = "mlcl-tiny") -> int:
    from mlcl.model import backbone_config

    return int(backbone_config(backbone)["embed_dim"])


def bench_checkpoint(path: Optional[str] = None, backbone: str = "mlcl-tiny") -> Path:
    """A checkpoint to benchmark: `path`, else the bundled model, else a random `backbone` model saved to a temp file
    (throughput does not depend on the weights)."""
    if path:
        return Path(path)
    from mlcl.paths import DEFAULT_CHECKPOINT

    if DEFAULT_CHECKPOINT.is_file():
        return DEFAULT_CHECKPOINT
    import tempfile

    out = Path(tempfile.gettempdir()) / f"mlcl-bench-random-{backbone}.pt"
    if not out.is_file():
        # In a subprocess: torch ops in this process before a Flow forks its executors can deadlock them.
        code = (
            "import sys, torch; sys.path.insert(0, sys.argv[3]); from mlcl.model import build_model, save_checkpoint; "
            "torch.manual_seed(0); save_checkpoint(build_model(sys.argv[1]), sys.argv[2])"
        )
        subprocess.run([sys.executable, "-c", code, backbone, str(out), str(REPO_ROOT)], check=True)
    return out
