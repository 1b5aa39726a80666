"""What every patch does before and when it touches jina: check the installed version and each private name
it uses (`require`), then replace a jina function once (`replace_once`).

A patch names what it relies on (`needs`: "module:attribute.path", or
"module:Class.__init__ sets _name" for an attribute that a constructor sets),
and `require` looks at the installed jina once. On a mismatch a patch either
steps aside with one warning line (serving works without it, a little worse)
or stops the start with one line that says what to pin (serving would be wrong
without it); each patch says which, and why, where it calls `require`.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
from typing import Any, Callable, Optional, Sequence, Set

#: The jina releases the patches were verified on (pyproject.toml pins the first).
VERIFIED = ("3.33.1",)
_log = logging.getLogger("mlcl")
_warned: Set[str] = set()


class JinaMismatch(RuntimeError):
    """The installed jina is not what a patch that cannot step aside was written for (the message says what to pin)."""


def _has(need: str) -> bool:
    module_name, _, path = need.partition(":")
    try:
        target = importlib.import_module(module_name)
    except ImportError:
        return False
    if " sets " in path:  # "Class.__init__ sets _attr": an instance attribute its constructor assigns
        method, _, attribute = path.partition(" sets ")
        path = method
    else:
        attribute = None
    for part in path.split(".") if path else []:
        if not hasattr(target, part):
            return False
        target = getattr(target, part)
    if attribute is None:
        return True
    target = inspect.unwrap(target)  # jina wraps some constructors (e.g. to record their arguments)
    code = getattr(target, "__code__", None)
    return code is not None and attribute in code.co_names


def source_holds(module_name: str, text: str) -> bool:
    """Whether a jina module's source still holds `text` (for a message a patch recognises)."""
    try:
        return text in inspect.getsource(importlib.import_module(module_name))
    except (ImportError, OSError, TypeError):
        return False


def mismatch(needs: Sequence[str]) -> Optional[str]:
    """Why the installed jina may not be what `needs` were verified on (another version, a missing name), or None."""
    try:
        import jina
    except ImportError:
        return "jina is not installed"
    version = getattr(jina, "__version__", "?")
    missing = [need for need in needs if not _has(need)]
    if missing:
        return f"jina {version} lacks {', '.join(missing)} (verified on jina {', '.join(VERIFIED)})"
    if version not in VERIFIED:
        return f"jina {version} is not a verified release ({', '.join(VERIFIED)})"
    return None


def require(patch: str, needs: Sequence[str], stop: bool, without: str = "") -> bool:
    """True when jina matches `needs`; else raise `JinaMismatch` (`stop`) or warn once and return False.

    `without`: what serving lacks when the patch steps aside (said in the warning).
    """
    problem = mismatch(needs)
    if problem is None:
        return True
    if stop:
        raise JinaMismatch(f"mlcl: {patch}: {problem}; pin it: pip install 'jina=={VERIFIED[0]}'")
    if patch not in _warned:
        _warned.add(patch)
        _log.warning(f"mlcl: {patch} not applied: {problem}" + (f"; {without}" if without else ""))
    return False


def replace_once(owner: Any, name: str, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Replace `owner.<name>` by `wrap(original)`; a second call (another import, another entry point) leaves it."""
    original = getattr(owner, name)
    if getattr(original, "_mlcl_patched", False):
        return
    patched = functools.wraps(original)(wrap(original))
    patched._mlcl_patched = True  # type: ignore[attr-defined]
    setattr(owner, name, patched)


__all__ = ["JinaMismatch", "VERIFIED", "mismatch", "replace_once", "require", "source_holds"]
