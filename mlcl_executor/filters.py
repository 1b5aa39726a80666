"""Metadata filters of `/search` (`parameters.filter`): the one parser and validator, and their evaluation over tags.

The language is docarray's query language (MongoDB-style operators, spelled as
docarray 0.41 spells them) over a gallery document's `tags`:

    {"category": {"$in": ["dress", "toptee"]}, "price": {"$lt": 50}}
    {"$or": [{"colour": {"$eq": "red"}}, {"$not": {"in_stock": {"$eq": false}}}]}

Keys are tag names; `a__b` reaches into a nested object (docarray's spelling).
Operators: `$eq`, `$neq`, `$in`, `$nin`, `$gt`, `$gte`, `$lt`, `$lte`,
`$exists`, `$and`, `$or`, `$not` (docarray's `$regex` and `$size` are not
offered: a regular expression from any client is a denial of service, and
neither has a Milvus equivalent). Several keys in one object, or several
operators on one key, must all hold.

What a filter means, the same on every backend (the tests check each store
against a brute-force reference):

- A tag's *value* is its string, number or boolean. Numbers compare
  numerically (1 equals 1.0), strings by code point, and a boolean equals
  only a boolean (true is not 1). A tag that is absent, null, a list or an
  object has no value.
- `$eq`, `$in` and the ranges (`$gt` ...) hold for a value of the operand's
  type only; `$neq` and `$nin` are their complements, so they also hold for
  a document without the tag (as in MongoDB; docarray's own evaluator says
  no there).
- `$exists: true` holds for a tag with a value; `$not` is the complement of
  the filter it wraps; `$and` / `$or` take a list of filters (or an object).

A malformed filter is a `RequestError` (HTTP 400) that names the problem and
where it is. `Filter.mask` evaluates a filter over a list of tag dicts as
NumPy masks over columns built once per tag and kept until the next write
(`TagColumns`); `stores/milvus_filter.py` translates a filter to a Milvus
expression.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import RequestError

COMPARISONS = ("$eq", "$neq", "$gt", "$gte", "$lt", "$lte")
MEMBERSHIP = ("$in", "$nin")
LOGICAL = ("$and", "$or", "$not")
OPERATORS = COMPARISONS + MEMBERSHIP + ("$exists",) + LOGICAL
RANGES = ("$gt", "$gte", "$lt", "$lte")

#: A tag name (one segment of a key): letters, digits, `_` and `-`, not only digits. Keys are pasted into
#: Milvus expressions as JSON paths, so nothing else may pass.
KEY_SEGMENT = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
MAX_NODES = 256  # leaves and logical nodes in one filter
MAX_DEPTH = 16
MAX_LIST = 1024  # values of one $in / $nin
MAX_STRING = 1024  # characters of one compared string
MAX_JSON = 65536  # characters of a filter sent as a JSON string
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Scalar = Union[str, int, float, bool]
Path = Tuple[str, ...]


@dataclass(frozen=True)
class Leaf:
    """One test of one tag: `op` is an operator of `COMPARISONS`, `MEMBERSHIP` or `$exists`."""

    path: Path
    op: str
    value: Any  # a scalar; a tuple of scalars for $in / $nin; a bool for $exists

    @property
    def key(self) -> str:
        return "__".join(self.path)


@dataclass(frozen=True)
class Node:
    """`$and` / `$or` of children, or `$not` of one child."""

    op: str
    children: Tuple[Union["Node", Leaf], ...]


Expr = Union[Node, Leaf]


@dataclass(frozen=True)
class Filter:
    """A validated filter (`parse_filter`)."""

    root: Expr
    source: str  # the filter as JSON, for messages

    def keys(self) -> List[str]:
        """The tag keys the filter reads, in order of appearance."""
        out: Dict[str, None] = {}

        def walk(e: Expr) -> None:
            if isinstance(e, Leaf):
                out[e.key] = None
            else:
                for c in e.children:
                    walk(c)

        walk(self.root)
        return list(out)

    def mask(self, tags: Sequence[Optional[Mapping[str, Any]]], columns: Optional["TagColumns"] = None) -> np.ndarray:
        """Which of `tags` (one dict, or None for none, per stored document) the filter keeps."""
        columns = columns if columns is not None else TagColumns()
        return _evaluate(self.root, tags, columns)


# ------------------------------------------------------------------ parsing
def _problem(message: str, where: str) -> RequestError:
    return RequestError(f"parameter 'filter': {message}" + (f" (at {where})" if where else ""))


def _scalar(value: Any, op: str, where: str) -> Scalar:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _problem(f"{op} takes a finite number, got {value!r}", where)
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise _problem(f"{op}: a string of at most {MAX_STRING} characters, got {len(value)}", where)
        if _CONTROL.search(value):
            raise _problem(f"{op}: strings may not hold control characters (newline, tab, ...)", where)
        return value
    if value is None:
        raise _problem(f"{op} does not compare with null (use $exists)", where)
    raise _problem(f"{op} compares with a string, a number or a boolean, got {type(value).__name__} {_short(value)}", where)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _path(key: Any, where: str) -> Path:
    if not isinstance(key, str) or not key:
        raise _problem(f"a tag name must be a non-empty string, got {_short(key)}", where)
    if key.startswith("$"):
        raise _problem(f"unknown operator {key!r} (supported: {', '.join(OPERATORS)})", where)
    parts = tuple(key.split("__"))
    for part in parts:
        if not KEY_SEGMENT.match(part) or part.isdigit():
            raise _problem(
                f"tag name {key!r} is not allowed: names are letters, digits, '_' and '-' (up to 128), "
                "not only digits, and '__' separates nested names", where)
    return parts


class _Parser:
    def __init__(self) -> None:
        self.nodes = 0

    def count(self, where: str) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _problem(f"more than {MAX_NODES} conditions", where)

    def conditions(self, value: Any, where: str, depth: int) -> Expr:
        """An object of `key: {op: value}` and logical operators (all must hold)."""
        if depth > MAX_DEPTH:
            raise _problem(f"nested deeper than {MAX_DEPTH}", where)
        if not isinstance(value, Mapping):
            raise _problem(f"expected an object of conditions, got {_short(value)}", where)
        if not value:
            raise _problem("an empty object of conditions", where)
        parts: List[Expr] = []
        for key, spec in value.items():
            here = f"{where}.{key}" if where else str(key)
            if key in ("$and", "$or"):
                parts.append(self.logical(key, spec, here, depth))
            elif key == "$not":
                self.count(here)
                parts.append(Node("$not", (self.conditions(spec, here, depth + 1),)))
            else:
                parts.append(self.field(_path(key, here), spec, here, depth))
        return parts[0] if len(parts) == 1 else Node("$and", tuple(parts))

    def logical(self, op: str, spec: Any, where: str, depth: int) -> Expr:
        self.count(where)
        if isinstance(spec, Mapping):  # docarray also takes an object: each of its entries is one filter
            items: List[Any] = [{k: v} for k, v in spec.items()]
        elif isinstance(spec, list):
            items = spec
        else:
            raise _problem(f"{op} takes a list of filters, got {_short(spec)}", where)
        if not items:
            raise _problem(f"{op} of nothing", where)
        return Node(op, tuple(self.conditions(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(items)))

    def field(self, path: Path, spec: Any, where: str, depth: int) -> Expr:
        if not isinstance(spec, Mapping) or not spec:
            raise _problem(f"a tag takes an object of operators, e.g. {{\"$eq\": ...}}, got {_short(spec)}", where)
        parts: List[Expr] = []
        for op, value in spec.items():
            self.count(where)
            here = f"{where}.{op}"
            if op == "$not":
                parts.append(Node("$not", (self.field(path, value, here, depth + 1),)))
            elif op in COMPARISONS:
                scalar = _scalar(value, op, here)
                if op in RANGES and isinstance(scalar, bool):
                    raise _problem(f"{op} compares numbers or strings, not booleans", here)
                parts.append(Leaf(path, op, scalar))
            elif op in MEMBERSHIP:
                if not isinstance(value, list) or not value:
                    raise _problem(f"{op} takes a non-empty list of values, got {_short(value)}", here)
                if len(value) > MAX_LIST:
                    raise _problem(f"{op} takes at most {MAX_LIST} values, got {len(value)}", here)
                parts.append(Leaf(path, op, tuple(_scalar(v, op, here) for v in value)))
            elif op == "$exists":
                if not isinstance(value, bool):
                    raise _problem(f"$exists takes true or false, got {_short(value)}", here)
                parts.append(Leaf(path, op, value))
            else:
                raise _problem(f"unknown operator {op!r} (supported: {', '.join(OPERATORS)})", here)
        return parts[0] if len(parts) == 1 else Node("$and", tuple(parts))


def parse_filter(value: Any) -> Optional[Filter]:
    """The `filter` request parameter as a `Filter` (None: absent, null or `{}`); `RequestError` names a problem.

    Takes the object itself, or the same object as a JSON string (command lines, query strings).
    """
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) > MAX_JSON:
            raise _problem(f"longer than {MAX_JSON} characters", "")
        try:
            value = json.loads(value) if value.strip() else None
        except ValueError as exc:
            raise _problem(f"not valid JSON ({exc})", "") from None
        if value is None:
            return None
    if isinstance(value, Mapping) and not value:
        return None
    root = _Parser().conditions(value, "", 0)
    return Filter(root, json.dumps(value, sort_keys=True, default=str))


# --------------------------------------------------------------- evaluation
def tag_value(tags: Optional[Mapping[str, Any]], path: Path) -> Any:
    """The value at `path` of a document's tags (None when absent)."""
    value: Any = tags
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


NONE, NUMBER, STRING, BOOLEAN = 0, 1, 2, 3


def kind_of(value: Any) -> int:
    """What a tag value is for a filter: NUMBER, STRING, BOOLEAN or NONE (absent, null, a list, an object)."""
    if isinstance(value, (bool, np.bool_)):
        return BOOLEAN
    if isinstance(value, (int, float, np.integer, np.floating)) and not math.isnan(value):
        return NUMBER
    if isinstance(value, str):
        return STRING
    return NONE


#: A tag value's kind by its exact type (JSON decodes to these; numpy scalars come from Python callers).
_KINDS: Dict[type, int] = {str: STRING, int: NUMBER, float: NUMBER, bool: BOOLEAN, np.bool_: BOOLEAN,
                           **{t: NUMBER for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                                  np.uint32, np.uint64, np.float16, np.float32, np.float64)}}


class Column:
    """One tag of every stored document, as arrays: its kind, number, string code (= rank among the sorted
    strings) and boolean. Built with list comprehensions and NumPy (no Python call per document)."""

    def __init__(self, tags: Sequence[Optional[Mapping[str, Any]]], path: Path) -> None:
        n = len(tags)
        if len(path) == 1:
            key = path[0]
            values = [t.get(key) if t else None for t in tags]
        else:
            values = [tag_value(t, path) if t else None for t in tags]
        kinds = [_KINDS.get(type(v), NONE) for v in values]
        self.kind = np.asarray(kinds, dtype=np.int8) if n else np.zeros(0, dtype=np.int8)
        scalars = np.empty(n, dtype=object)
        scalars[:] = [v if k else None for v, k in zip(values, kinds)]  # no list or dict left to broadcast
        self.number = np.full(n, np.nan)
        self.boolean = np.zeros(n, dtype=bool)
        self.code = np.full(n, -1, dtype=np.int64)
        numbers, strings, booleans = self.kind == NUMBER, self.kind == STRING, self.kind == BOOLEAN
        if numbers.any():
            self.number[numbers] = scalars[numbers].astype(np.float64)
        if booleans.any():
            self.boolean[booleans] = scalars[booleans].astype(bool)
        self.strings: List[str] = []
        if strings.any():
            unique, inverse = np.unique(scalars[strings].astype(str), return_inverse=True)  # sorted: code = rank
            self.strings = unique.tolist()
            self.code[strings] = inverse
        self.codes = {s: i for i, s in enumerate(self.strings)}
        self.rank = self.code

    def equals(self, value: Scalar) -> np.ndarray:
        if isinstance(value, bool):
            return (self.kind == BOOLEAN) & (self.boolean == value)
        if isinstance(value, str):
            code = self.codes.get(value)
            return self.code == code if code is not None else np.zeros(len(self.kind), dtype=bool)
        return (self.kind == NUMBER) & (self.number == value)

    def member(self, values: Sequence[Scalar]) -> np.ndarray:
        out = np.zeros(len(self.kind), dtype=bool)
        strings = [self.codes[v] for v in values if isinstance(v, str) and v in self.codes]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        booleans = [v for v in values if isinstance(v, bool)]
        if strings:
            out |= np.isin(self.code, strings)
        if numbers:
            out |= (self.kind == NUMBER) & np.isin(self.number, np.asarray(numbers, dtype=np.float64))
        for b in set(booleans):
            out |= (self.kind == BOOLEAN) & (self.boolean == b)
        return out

    def compare(self, op: str, value: Union[int, float, str]) -> np.ndarray:
        if isinstance(value, str):
            # ranks of the stored strings against the operand's insertion points in the sorted strings
            low, high = bisect.bisect_left(self.strings, value), bisect.bisect_right(self.strings, value)
            rank = self.rank
            test = {"$gt": rank >= high, "$gte": rank >= low, "$lt": rank < low, "$lte": rank < high}[op]
            return (self.kind == STRING) & test
        number = self.number
        with np.errstate(invalid="ignore"):
            test = {"$gt": number > value, "$gte": number >= value, "$lt": number < value, "$lte": number <= value}[op]
        return (self.kind == NUMBER) & test


class TagColumns:
    """Columns of the stored tags, built on the first filter that reads a tag and kept until `invalidate`
    (a store calls it on every write)."""

    def __init__(self) -> None:
        self._columns: Dict[Path, Column] = {}
        self._size = -1

    def invalidate(self) -> None:
        self._columns.clear()

    def column(self, tags: Sequence[Optional[Mapping[str, Any]]], path: Path) -> Column:
        if len(tags) != self._size:  # a write the store did not report; never read a column of another size
            self._columns.clear()
            self._size = len(tags)
        if path not in self._columns:
            self._columns[path] = Column(tags, path)
        return self._columns[path]


def _evaluate(e: Expr, tags: Sequence[Optional[Mapping[str, Any]]], columns: TagColumns) -> np.ndarray:
    if isinstance(e, Node):
        masks = [_evaluate(c, tags, columns) for c in e.children]
        if e.op == "$not":
            return ~masks[0]
        return np.logical_and.reduce(masks) if e.op == "$and" else np.logical_or.reduce(masks)
    col = columns.column(tags, e.path)
    if e.op == "$eq":
        return col.equals(e.value)
    if e.op == "$neq":
        return ~col.equals(e.value)
    if e.op == "$in":
        return col.member(e.value)
    if e.op == "$nin":
        return ~col.member(e.value)
    if e.op == "$exists":
        present = col.kind != NONE
        return present if e.value else ~present
    return col.compare(e.op, e.value)


def matches(flt: Optional[Filter], tags: Optional[Mapping[str, Any]]) -> bool:
    """Whether one document's tags pass `flt` (None passes everything)."""
    return True if flt is None else bool(flt.mask([tags])[0])


__all__ = [
    "COMPARISONS", "Filter", "KEY_SEGMENT", "LOGICAL", "Leaf", "MEMBERSHIP", "Node", "OPERATORS", "RANGES",
    "TagColumns", "kind_of", "matches", "parse_filter", "tag_value",
]
