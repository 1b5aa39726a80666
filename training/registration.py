"""Registering into LAVIS's registry, idempotently."""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")


def register_once(kind: str, name: str) -> Callable[[T], T]:
    """Like `registry.register_<kind>(name)`, but a second registration of the
    same class (a re-imported module) replaces the entry instead of raising;
    a different class under the same name still raises."""
    from lavis.common.registry import registry

    def wrap(cls: T) -> T:
        mapping = registry.mapping[f"{kind}_name_mapping"]
        existing = mapping.get(name)
        if existing is not None:
            same = (existing.__module__, existing.__qualname__) == (cls.__module__, cls.__qualname__)
            if not same:
                raise KeyError(f"LAVIS {kind} name {name!r} is already registered for {existing}")
            mapping[name] = cls
            return cls
        return getattr(registry, f"register_{kind}")(name)(cls)

    return wrap
