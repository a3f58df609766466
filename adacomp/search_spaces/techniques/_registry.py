"""Techniques registered by name; users add their own with `register_technique`."""

from __future__ import annotations

from adacomp.errors import AdacompError
from adacomp.search_spaces.techniques._base import Technique

_REGISTRY: dict[str, Technique] = {}


def register_technique(technique: Technique, *, replace: bool = False) -> Technique:
    """Make `technique` available to plans under `technique.name`."""
    name = getattr(technique, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a technique needs a `name` that is an identifier, got {name!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"technique {name!r} is already registered; pass replace=True to override")
    _REGISTRY[name] = technique
    return technique


def unregister_technique(name: str) -> None:
    _REGISTRY.pop(name, None)


def get_technique(name: str) -> Technique:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise AdacompError(f"unknown technique {name!r}; registered techniques: {known}") from None


def registered_techniques() -> dict[str, Technique]:
    return dict(sorted(_REGISTRY.items()))
