"""Request parameters (`parameters: {...}` of a request): the one parser every Executor and store uses.

Strict everywhere: a value that is not what the parameter takes is the client's
mistake, raised as `RequestError` naming the parameter and the value (HTTP 400
through the gateway, see errors.py), never read as a default. Numbers arrive as
floats from JSON and protobuf, so an integer parameter takes 5.0 but not 5.5;
a boolean takes JSON true/false, 0/1 and the words true/false/yes/no/on/off.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from .errors import RequestError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def param_int(parameters: Optional[Mapping[str, Any]], key: str, default: Optional[int] = None,
              low: Optional[int] = None, high: Optional[int] = None) -> Optional[int]:
    """An integer parameter in [low, high] (either bound optional); `default` when absent or null."""
    value = (parameters or {}).get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        number = None
    elif isinstance(value, float):
        number = int(value) if value.is_integer() else None
    else:
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = None
    if number is None:
        raise RequestError(f"parameter {key!r} must be an integer, got {value!r}")
    if (low is not None and number < low) or (high is not None and number > high):
        span = f"between {low} and {high}" if low is not None and high is not None else (
            f"at least {low}" if low is not None else f"at most {high}")
        raise RequestError(f"parameter {key!r} must be {span}, got {number}")
    return number


def param_bool(parameters: Optional[Mapping[str, Any]], key: str, default: bool = False) -> bool:
    """A boolean parameter; `default` when absent or null."""
    value = (parameters or {}).get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise RequestError(f"parameter {key!r} must be true or false, got {value!r}")


def param_choice(parameters: Optional[Mapping[str, Any]], key: str, choices: Sequence[str], default: str) -> str:
    """One of `choices` (case-insensitive); `default` when absent or null."""
    value = (parameters or {}).get(key)
    if value is None:
        return default
    word = value.strip().lower() if isinstance(value, str) else None
    if word not in choices:
        raise RequestError(f"parameter {key!r} must be {' or '.join(repr(c) for c in choices)}, got {value!r}")
    return word


__all__ = ["param_bool", "param_choice", "param_int"]
