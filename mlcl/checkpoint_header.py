"""What a checkpoint file says about itself, read without torch (for checks before anything starts).

`mlcl.model.checkpoint` writes and loads checkpoints (it needs torch); this
module only reads the small pickled header of the zip archive `torch.save`
writes, with tensors left out, so a server can refuse a wrong file in well
under a second instead of after starting a process that imports torch.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Optional

FORMAT = "mlcl-checkpoint"
FORMAT_VERSION = 1

# Classes the header may name: plain containers; anything else (torch's tensor
# rebuilders, storages) is replaced by a stub that is never called for real work.
_ALLOWED = {("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice")}


class _Stub:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> "_Stub":
        return _Stub()

    def __setstate__(self, state: Any) -> None:
        pass


class _HeaderUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        return _Stub()

    def persistent_load(self, pid: Any) -> Any:  # tensor storages live in other archive members
        return None


def checkpoint_problem(path: Path) -> Optional[str]:
    """Why `path` is not an mlcl checkpoint this version reads (one line), or None."""
    if not path.exists():
        return f"checkpoint {path} does not exist"
    if not path.is_file():
        return f"checkpoint {path} is not a file"
    if not zipfile.is_zipfile(path):
        return f"checkpoint {path} is not a PyTorch checkpoint (not a torch.save archive)"
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        data = [n for n in names if n.endswith("/data.pkl")]
        if not data or not any(n.endswith("/version") for n in names):
            return f"checkpoint {path} is not a PyTorch checkpoint (a zip file without torch's data.pkl and version)"
        try:
            with archive.open(data[0]) as f:
                payload = _HeaderUnpickler(f).load()
        except Exception as exc:  # any corruption of the pickled header
            return f"checkpoint {path} is not readable ({type(exc).__name__}: {exc})"
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        return (f"checkpoint {path} is not an mlcl checkpoint (no 'format': '{FORMAT}'; a bare open_clip or "
                "LAVIS checkpoint is a training input, not a model to serve; the MLCL authors' or CLIP4Cir's "
                "files: mlcl import-weights)")
    if not isinstance(payload.get("format_version"), int) or payload["format_version"] > FORMAT_VERSION:
        return f"checkpoint {path}: format {payload.get('format_version')!r} is not one this mlcl reads ({FORMAT_VERSION})"
    if not isinstance(payload.get("config"), dict) or "backbone" not in payload["config"]:
        return f"checkpoint {path} has no model config (it cannot be rebuilt)"
    return None


__all__ = ["FORMAT", "FORMAT_VERSION", "checkpoint_problem"]
