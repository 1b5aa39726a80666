"""Caption text for a modification, and the inverse: parsing a caption.

Templates live in config.yaml. The parser is built from the same templates;
it lets tests (and the oracle baselines) check that image + text determine the
target: parse the caption, resolve its referring expression in the reference
scene, apply it.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .config import load_config
from .modify import Modification
from .refer import Expression, minimal_expression
from .scene import Obj, Scene

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _fill_values(mod: Modification, ref_scene: Scene, ref_text: str | None = None) -> dict[str, str]:
    cfg = load_config()
    vals: dict[str, str] = {}
    if mod.kind == "add":
        vals["obj"] = mod.obj.describe()
        vals["where"] = "in the " + cfg.cell_names[mod.obj.cell]
        return vals
    vals["ref"] = minimal_expression(ref_scene, mod.obj).text() if ref_text is None else ref_text
    if mod.kind in ("colour", "shape", "size"):
        vals[mod.kind] = str(mod.value)
    if mod.kind == "size":
        vals.update(cfg.size_words[str(mod.value)])
    if mod.kind == "move":
        vals["cell"] = cfg.cell_names[int(mod.value)]  # type: ignore[arg-type]
    return vals


def caption(mod: Modification, ref_scene: Scene, rng: random.Random, ref_text: str | None = None) -> str:
    """A caption for `mod` in a randomly chosen phrasing of its kind.

    ref_text: how the caption names the object acted on (default: its
    minimal referring expression in `ref_scene`; the hard split passes a
    relational one, or "it").
    """
    templates = load_config().templates[mod.kind]
    template = templates[rng.randrange(len(templates))]
    return template.format(**_fill_values(mod, ref_scene, ref_text))


def all_captions(mod: Modification, ref_scene: Scene) -> list[str]:
    """Every phrasing of `mod` (for augmentation or inspection)."""
    vals = _fill_values(mod, ref_scene)
    return [t.format(**vals) for t in load_config().templates[mod.kind]]


# ---------------------------------------------------------------- parsing
@dataclass(frozen=True)
class ParsedCaption:
    """What the text alone says: the kind, which object (expression), and the
    new value; for "add" the new object is fully given."""

    kind: str
    expression: Expression | None
    new_object: Obj | None
    value: str | int | None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind,
                "expression": self.expression.to_json() if self.expression else None,
                "new_object": self.new_object.to_json() if self.new_object else None,
                "value": self.value}


def _alt(words: Any) -> str:
    # Longest first so that alternation never stops at a prefix.
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


@lru_cache(maxsize=1)
def _patterns() -> list[tuple[str, re.Pattern[str]]]:
    cfg = load_config()
    colours, shapes, sizes = _alt(cfg.colours), _alt(cfg.shapes), _alt(cfg.size_names)
    positions = _alt(list(cfg.column_phrases) + list(cfg.row_phrases)
                     + ["in the " + c for c in cfg.cell_names])
    groups = {
        "ref": (rf"the(?: (?P<r_size>{sizes}))?(?: (?P<r_colour>{colours}))?"
                rf" (?P<r_shape>{shapes})(?: (?P<r_pos>{positions}))?"),
        "obj": rf"an? (?P<o_size>{sizes}) (?P<o_colour>{colours}) (?P<o_shape>{shapes})",
        "where": rf"in the (?P<where>{_alt(cfg.cell_names)})",
        "cell": rf"(?P<cell>{_alt(cfg.cell_names)})",
        "colour": rf"(?P<colour>{colours})",
        "shape": rf"(?P<shape>{shapes})",
        "size": rf"(?P<size>{sizes})",
        "bigger": rf"(?P<bigger>{_alt(w['bigger'] for w in cfg.size_words.values())})",
        "grow": rf"(?P<grow>{_alt(w['grow'] for w in cfg.size_words.values())})",
    }
    out = []
    for kind, templates in cfg.templates.items():
        for t in templates:
            parts = _PLACEHOLDER.split(t)  # literal, name, literal, name, ...
            rx = "".join(re.escape(p) if i % 2 == 0 else groups[p] for i, p in enumerate(parts))
            out.append((kind, re.compile(rx)))
    return out


def _position(phrase: str | None) -> tuple[int | None, int | None]:
    """(row, column) named by a position phrase."""
    if phrase is None:
        return None, None
    cfg = load_config()
    if phrase in cfg.column_phrases:
        return None, cfg.column_phrases.index(phrase)
    if phrase in cfg.row_phrases:
        return cfg.row_phrases.index(phrase), None
    return divmod(cfg.cell_names.index(phrase[len("in the "):]), cfg.grid)


def parse_caption(text: str) -> list[ParsedCaption]:
    """Every reading of `text` under the templates (exactly one for generated captions)."""
    cfg = load_config()
    readings: list[ParsedCaption] = []
    for kind, rx in _patterns():
        m = rx.fullmatch(text.strip().lower())
        if not m:
            continue
        g = m.groupdict()
        expr = None
        if g.get("r_shape"):
            row, col = _position(g.get("r_pos"))
            expr = Expression(shape=g["r_shape"], colour=g.get("r_colour"), size=g.get("r_size"),
                              row=row, column=col)
        new_obj = None
        value: str | int | None = None
        if kind == "add":
            new_obj = Obj(cfg.cell_names.index(g["where"]), g["o_colour"], g["o_shape"], g["o_size"])
        elif kind == "move":
            value = cfg.cell_names.index(g["cell"])
        elif kind == "size":
            if g.get("size"):
                value = g["size"]
            else:
                key, word = ("bigger", g["bigger"]) if g.get("bigger") else ("grow", g["grow"])
                value = next(z for z, w in cfg.size_words.items() if w[key] == word)
        elif kind in ("colour", "shape"):
            value = g[kind]
        reading = ParsedCaption(kind, expr, new_obj, value)
        if reading not in readings:
            readings.append(reading)
    return readings


class CaptionError(ValueError):
    """A caption that does not parse, or whose object is missing or ambiguous."""


def resolve(parsed: ParsedCaption, scene: Scene) -> Modification:
    """The modification a parsed caption denotes in `scene`.

    Raises CaptionError when the expression picks out no object or several.
    """
    if parsed.kind == "add":
        assert parsed.new_object is not None
        return Modification("add", parsed.new_object)
    assert parsed.expression is not None
    found = parsed.expression.referents(scene)
    if len(found) != 1:
        raise CaptionError(
            f"{parsed.expression.text()!r} matches {len(found)} objects in {scene.key!r}; expected exactly 1"
        )
    return Modification(parsed.kind, found[0], parsed.value)


def interpret(text: str, scene: Scene) -> Modification:
    """Parse `text` and resolve it in `scene`; CaptionError unless there is exactly one reading."""
    readings = parse_caption(text)
    if len(readings) != 1:
        raise CaptionError(f"caption {text!r} has {len(readings)} readings; expected exactly 1")
    return resolve(readings[0], scene)
