"""`--options KEY=VALUE` checks: a key no config or schema knows is refused, naming the closest known key.

LAVIS merges any dotted key into the config, so a typo (`run.max_stepz=3`)
or a missing section (`max_steps=3`) used to be stored and ignored while a
full run started.  The known keys are every path of the merged config (the
run file over the model's and data sets' defaults) and those of
training/configs/schema.yaml (settings read with a default when absent).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

SCHEMA_PATH = Path(__file__).resolve().parent / "configs" / "schema.yaml"


def config_paths(tree: Any, prefix: str = "") -> set[str]:
    """Every dotted path of a nested mapping (sections and leaves)."""
    out: set[str] = set()
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            path = f"{prefix}{key}"
            out.add(path)
            out |= config_paths(value, path + ".")
    return out


def schema_paths(datasets: Iterable[str], schema: Mapping[str, Any] | None = None) -> tuple[set[str], set[str]]:
    """(known paths, open sections whose every sub-key is allowed) of the schema, "*" data sets expanded."""
    if schema is None:
        import yaml

        schema = yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))
    tree = {k: v for k, v in schema.items() if k != "datasets"}
    per_dataset = dict(schema.get("datasets") or {})
    common = per_dataset.pop("*", {}) or {}
    tree["datasets"] = {name: {**common, **(per_dataset.get(name) or {})} for name in datasets}
    known, open_sections = set(), set()

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}{key}"
            known.add(path)
            if value == "*":
                open_sections.add(path)
            elif isinstance(value, Mapping):
                walk(value, path + ".")

    walk(tree, "")
    return known, open_sections


def closest_key(key: str, known: Iterable[str]) -> str | None:
    """The known key a user most likely meant: one with the same last part (a missing section), else the
    most similar spelling."""
    known = sorted(known)
    tail = key.rsplit(".", 1)[-1]
    same_tail = [k for k in known if k.rsplit(".", 1)[-1] == tail]
    if same_tail:
        return min(same_tail, key=len)
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if match:
        return match[0]
    by_tail = {k.rsplit(".", 1)[-1]: k for k in known}
    match = difflib.get_close_matches(tail, list(by_tail), n=1, cutoff=0.6)
    return by_tail[match[0]] if match else None


def check_option_keys(options: Sequence[str], config: Mapping[str, Any]) -> None:
    """Raise ValueError for an option whose key neither `config` (the merged config without the
    options, as plain dicts) nor the schema knows; the message names the closest known key."""
    datasets = list((config.get("datasets") or {}).keys())
    known, open_sections = schema_paths(datasets)
    known |= config_paths(config)
    problems = []
    for option in options:
        key = option.split("=", 1)[0].strip()
        if key in known or any(key.startswith(s + ".") for s in open_sections):
            continue
        hint = closest_key(key, known)
        problems.append(f"unknown option key {key!r}" + (f" (did you mean {hint!r}?)" if hint else ""))
    if problems:
        raise ValueError("; ".join(problems) + "; known keys: the run config, its model and data set defaults, "
                         "and training/configs/schema.yaml")

