"""Checks before a training run or an evaluation starts: the data root, and the `pretrained` weights.

Both fail in one line, at once: a data root that does not hold the data set,
a `pretrained` file that does not exist, an open_clip tag that is neither in
the local download cache nor downloadable because the hub cannot be reached
(without this, open_clip's download retries for about a minute before any
word). Used by `training.api.train` (on the merged config) and `mlcl eval`.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Mapping, Optional
from urllib.parse import urlparse

# Data sets read from a root folder (others, like shapes, are generated on demand).
REAL_DATASETS = ("fashioniq", "cirr", "shoes")
PROBE_TIMEOUT_S = 3.0  # a firewalled network drops packets instead of refusing: do not wait for TCP's own timeout
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


class PreflightError(ValueError):
    """Something a run needs is missing; the message says what and the way out, in one line."""


def check_data_root(dataset: str, root: Any) -> None:
    """Raise PreflightError unless `root` holds `dataset` in its official layout (generated sets pass)."""
    if dataset not in REAL_DATASETS:
        return
    if root in (None, "", "???"):
        raise PreflightError(f"{dataset}: no data root given (--data-root DIR); {dataset} cannot be downloaded by mlcl")
    path = Path(str(root)).expanduser()
    if not path.is_dir():
        raise PreflightError(f"{dataset}: data root {path} does not exist (--data-root DIR; layouts in docs/evaluation.md)")
    try:
        if dataset == "fashioniq":
            from mlcl.data.fashioniq import resolve_root

            resolve_root(path)
        elif dataset == "cirr":
            from mlcl.data.cirr import resolve_root

            resolve_root(path)
        elif dataset == "shoes":
            from mlcl.data.shoes import CAPTIONS_FILE

            if not (path / CAPTIONS_FILE).is_file():
                raise FileNotFoundError(f"Shoes: no {CAPTIONS_FILE} in {path}; see docs/evaluation.md")
    except FileNotFoundError as exc:
        raise PreflightError(str(exc)) from None


def _proxy_configured() -> bool:
    return any(os.environ.get(v) for v in PROXY_VARIABLES)


def host_reachable(host: str, port: int = 443, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to host:port opens within `timeout` (name resolution included)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _cached_download(cfg: Mapping[str, Any]) -> Optional[str]:
    """The local copy of an open_clip pretrained download, if an earlier run left one in the cache."""
    hub = cfg.get("hf_hub") or ""
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
            from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
        except ImportError:
            hub = ""
        else:
            repo, filename = os.path.split(hub)  # as open_clip splits it: "org/model/" = its default file names
            names = [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
            for name in names:
                found = try_to_load_from_cache(repo, name)
                if isinstance(found, str):
                    return found
    url = cfg.get("url") or ""
    if url:
        local = Path("~/.cache/clip").expanduser() / os.path.basename(url)  # open_clip's download folder for URLs
        if local.is_file():
            return str(local)
    return None


def _download_host(cfg: Mapping[str, Any]) -> str:
    if cfg.get("hf_hub"):
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        return urlparse(endpoint).hostname or "huggingface.co"
    return urlparse(cfg.get("url") or "").hostname or ""


def check_pretrained(backbone: str, pretrained: Optional[str], key: str = "model.pretrained") -> None:
    """Raise PreflightError when `pretrained` cannot be had: a missing file, an unknown tag, or a tag
    that needs a download from a hub this machine cannot reach (and is not in the local cache)."""
    if not pretrained:
        return
    import open_clip

    from mlcl.model.backbone import register_configs
    from mlcl.model.clip_weights import is_local_pretrained

    if is_local_pretrained(pretrained):
        if not Path(pretrained).expanduser().is_file():
            raise PreflightError(f"{key}={pretrained!r}: no such file")
        return
    register_configs()
    cfg = open_clip.get_pretrained_cfg(backbone, pretrained)
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(backbone)) or "none"
        raise PreflightError(f"{key}={pretrained!r} is neither a file nor an open_clip tag of {backbone} "
                             f"(its tags: {tags})")
    if _cached_download(cfg) or _proxy_configured():
        return  # cached, or a proxy this check cannot see through: let the download run
    host = _download_host(cfg)
    offline = os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0") and bool(cfg.get("hf_hub"))
    if offline or not host or not host_reachable(host):
        why = "HF_HUB_OFFLINE is set" if offline else f"{host or 'its host'} cannot be reached from this machine"
        raise PreflightError(
            f"{key}={pretrained!r} needs a download of {backbone}'s weights and {why}: give a local file, "
            f"e.g. --options {key}=/path/to/{backbone}.pt (OpenAI's release file or a state dict; docs/training.md)")


def check_training_inputs(config: Mapping[str, Any]) -> None:
    """The checks for a merged training config (plain dicts: `model`, `datasets`), data first.

    `pretrained` is checked only when the run loads it: `model.init_from` / `model.load_from` bring
    their own weights (a stage-2 run needs no download).
    """
    for name, ds in (config.get("datasets") or {}).items():
        check_data_root(name, (ds or {}).get("root"))
    model = config.get("model") or {}
    if not (model.get("init_from") or model.get("load_from")):
        check_pretrained(str(model.get("backbone", "")), model.get("pretrained"))


__all__ = ["PreflightError", "check_data_root", "check_pretrained", "check_training_inputs", "host_reachable"]
