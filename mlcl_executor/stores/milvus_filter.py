"""A metadata filter (`filters.py`) as a Milvus boolean expression over the collection's JSON field `tags`.

Values travel as `filter_params` (Milvus's expression templates: `tags["c"] == {p0}`)
where the target supports them (a Milvus server, 2.5 and later). Milvus Lite 2.5.1
has no templates (its parser stops at `{`), no `not` ("unsupported expr proto node")
and no `exists`, so for it (`LITE`):

- values are written into the expression by `literal` alone: strings double-quoted
  with `\\` and `"` escaped (the parser refused control characters), numbers and
  booleans as JSON; keys are only ever names that `filters.KEY_SEGMENT` admits, so
  neither can end the quoted value or the JSON path they sit in;
- `$not` is pushed down to the leaves (De Morgan; `$eq`/`$neq` and `$in`/`$nin` are
  each other's complements), which covers every filter but the complement of a
  range or of `$exists: true` (`$exists: false`, `$not` around `$gt` ...): those
  are refused with a message that says so.

The meaning is `filters.py`'s, verified on Milvus Lite 2.5.1: `!=` and `not in` hold
for a document without the tag, comparisons of different types are false, `in`
needs a list of one type (so a list is split by type), and a tag "has a value" when
it is a string (`>= ""`), a number (`>= 0 or < 0`) or a boolean (`in [true, false]`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

from ..errors import RequestError
from ..filters import KEY_SEGMENT, RANGES, Expr, Filter, Leaf


@dataclass(frozen=True)
class Dialect:
    """What a Milvus target accepts in an expression."""

    templates: bool  # values as filter_params
    negation: bool  # `not (...)`


LITE = Dialect(templates=False, negation=False)  # Milvus Lite 2.5.1
SERVER = Dialect(templates=True, negation=True)  # a Milvus server, 2.5 and later

_OPS = {"$eq": "==", "$neq": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_COMPLEMENT = {"$eq": "$neq", "$neq": "$eq", "$in": "$nin", "$nin": "$in"}


def literal(value: Any) -> str:
    """A value as Milvus Lite's parser reads it (strings, numbers, booleans, lists of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise ValueError("control characters cannot be written in a Milvus string literal")
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    raise TypeError(f"not a filter value: {type(value).__name__}")


class _Writer:
    def __init__(self, field: str, dialect: Dialect) -> None:
        self.field = field
        self.dialect = dialect
        self.params: Dict[str, Any] = {}

    def value(self, value: Any) -> str:
        if not self.dialect.templates:
            return literal(value)
        name = f"p{len(self.params)}"
        self.params[name] = list(value) if isinstance(value, tuple) else value
        return "{" + name + "}"

    def path(self, leaf: Leaf) -> str:
        for part in leaf.path:  # the parser admits nothing else; checked again where it is pasted
            if not KEY_SEGMENT.match(part):
                raise ValueError(f"tag name {part!r} cannot be written in a Milvus expression")
        return self.field + "".join(f'["{part}"]' for part in leaf.path)

    def present(self, p: str) -> str:
        return f'({p} >= "" or {p} >= 0 or {p} < 0 or {p} in [true, false])'

    def membership(self, p: str, values: Tuple[Any, ...], negated: bool) -> str:
        # Milvus wants a list of one type: strings, numbers (as floats: 1 and 2.5 in one list fail), booleans
        groups: List[List[Any]] = [
            [v for v in values if isinstance(v, str)],
            [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)],
            sorted({v for v in values if isinstance(v, bool)}),
        ]
        parts = [f"{p} {'not in' if negated else 'in'} {self.value(tuple(g))}" for g in groups if g]
        return "(" + (" and " if negated else " or ").join(parts) + ")"

    def leaf(self, leaf: Leaf, negated: bool) -> str:
        p = self.path(leaf)
        op = leaf.op
        if op in _COMPLEMENT:
            op = _COMPLEMENT[op] if negated else op
            if op in ("$in", "$nin"):
                return self.membership(p, leaf.value, op == "$nin")
            return f"({p} {_OPS[op]} {self.value(leaf.value)})"
        if op == "$exists":
            wanted = leaf.value != negated
            return self.present(p) if wanted else self.negate(self.present(p), leaf)
        assert op in RANGES
        text = f"({p} {_OPS[op]} {self.value(leaf.value)})"
        return self.negate(text, leaf) if negated else text

    def negate(self, text: str, leaf: Leaf) -> str:
        if not self.dialect.negation:
            what = "$exists: false" if leaf.op == "$exists" else f"$not around {leaf.op}"
            raise RequestError(
                f"parameter 'filter': {what} (at {leaf.key}) cannot be expressed on Milvus Lite, which has no negation; "
                "a Milvus server can (or filter on a tag every document has, e.g. with $eq/$neq)"
            )
        return f"(not {text})"

    def expr(self, e: Expr, negated: bool = False) -> str:
        if isinstance(e, Leaf):
            return self.leaf(e, negated)
        if e.op == "$not":
            if self.dialect.negation and not negated:
                return f"(not {self.expr(e.children[0])})"
            return self.expr(e.children[0], not negated)
        conjunction = (e.op == "$and") != negated  # De Morgan
        parts = [self.expr(c, negated) for c in e.children]
        return "(" + (" and " if conjunction else " or ").join(parts) + ")"


def milvus_filter(flt: Filter, dialect: Dialect, field: str = "tags") -> Tuple[str, Dict[str, Any]]:
    """(expression, filter_params) of `flt` for a target that speaks `dialect`; RequestError when it cannot."""
    writer = _Writer(field, dialect)
    return writer.expr(flt.root), writer.params


__all__ = ["Dialect", "LITE", "SERVER", "literal", "milvus_filter"]
