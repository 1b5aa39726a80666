"""Where the Flow YAMLs and the encoder's config.yml are: the checkout's, or the installed package's.

The repository's `config.yml` and `flows/` are the documented entry points
(`jina flow --uses flows/flow.yml`) and the only copies in git. Building the
package copies them into `mlcl_executor/resources/` (setup.py), so that an
installed `mlcl` (not editable) finds its Flows from any directory, the way
clip-as-service ships its Flow YAMLs inside `clip_server`. In a checkout
(editable install, or PYTHONPATH) the repository's files are used, so an edit
to them takes effect at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT_ROOT = PACKAGE_DIR.parent  # the repository root when running from a checkout
#: Copied into the package by setup.py (paths relative to the repository root).
FILES = ("config.yml", "flows/flow.yml", "flows/flow.sharded.yml", "flows/flow.milvus.yml", "flows/flow.docker.yml",
         "flows/indexer.yml", "flows/merger.yml")


def resources_root() -> Path:
    """The folder holding `config.yml` and `flows/`: the checkout's if there is one, else the package's copy."""
    if (CHECKOUT_ROOT / "flows" / "flow.yml").is_file() and (CHECKOUT_ROOT / "config.yml").is_file():
        return CHECKOUT_ROOT
    packaged = PACKAGE_DIR / "resources"
    if (packaged / "flows" / "flow.yml").is_file():
        return packaged
    raise FileNotFoundError(
        f"no Flow YAMLs: neither a checkout ({CHECKOUT_ROOT}/flows) nor the package's copy ({packaged}/flows); "
        "reinstall mlcl (pip install .) or run from the repository"
    )


def flow_path(name: str = "flow") -> Path:
    """A Flow YAML by short name (`flow`, `sharded`, `milvus`, `docker`) or file name (`flow.sharded.yml`)."""
    stem = name[: -len(".yml")] if name.endswith(".yml") else name
    if stem != "flow" and not stem.startswith("flow."):
        stem = f"flow.{stem}"
    return resources_root() / "flows" / f"{stem}.yml"


def flow_names() -> List[str]:
    return sorted(p.name for p in (resources_root() / "flows").glob("flow*.yml"))


def encoder_config() -> Path:
    return resources_root() / "config.yml"


__all__ = ["FILES", "encoder_config", "flow_names", "flow_path", "resources_root"]
