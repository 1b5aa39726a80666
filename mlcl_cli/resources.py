"""Where the Flow YAMLs and the encoder's config.yml are: the checkout's, or the installed package's.

The repository's `config.yml` and `flows/` are the documented entry points
(`jina flow --uses flows/flow.yml`) and the only copies in git. Building the
package copies the files that `PATTERNS` names into `mlcl_cli/packaged/`
(setup.py reads `PATTERNS` from this file), so that an installed `mlcl` (not
editable) finds its Flows from any directory, the way clip-as-service ships its
Flow YAMLs inside `clip_server`. In a checkout (editable install, or PYTHONPATH)
the repository's files are used, so an edit to them takes effect at once.

Only the standard library here: setup.py runs this file before anything is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

#: What ships inside the package: globs relative to the repository root (setup.py copies them).
PATTERNS = ("config.yml", "flows/*.yml")
PACKAGED = "packaged"  # the folder inside mlcl_cli/ that holds the copies

PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT_ROOT = PACKAGE_DIR.parent  # the repository root when running from a checkout


def resource_files(root: Path) -> List[Path]:
    """The files under `root` that `PATTERNS` names (relative paths, sorted)."""
    return sorted({p.relative_to(root) for pattern in PATTERNS for p in root.glob(pattern) if p.is_file()})


def resources_root() -> Path:
    """The folder holding `config.yml` and `flows/`: the checkout's if there is one, else the package's copy."""
    for root in (CHECKOUT_ROOT, PACKAGE_DIR / PACKAGED):
        if (root / "flows" / "flow.yml").is_file() and (root / "config.yml").is_file():
            return root
    raise FileNotFoundError(
        f"no Flow YAMLs: neither a checkout ({CHECKOUT_ROOT}/flows) nor the package's copy "
        f"({PACKAGE_DIR / PACKAGED}/flows); reinstall mlcl (pip install .) or run from the repository"
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


__all__ = ["PATTERNS", "encoder_config", "flow_names", "flow_path", "resource_files", "resources_root"]
