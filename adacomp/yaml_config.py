"""Loading a YAML config into a pydantic model, with one-line errors naming the file and field.

Shared by the farm config and the search config: read through the loading guard
(`safe_load.py`: size, depth, number length, finite numbers), safe_load only, a mapping at the top, the first
validation error reported as `file: field.path: message`.
"""

from __future__ import annotations

import difflib
import os
import typing
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from adacomp.errors import AdacompError
from adacomp.safe_load import load_yaml_file

ModelT = TypeVar("ModelT", bound=BaseModel)


def _mentions_bool(annotation: Any) -> bool:
    """Whether a field's type may hold a bool itself or through a nested model (`bool`,
    `bool | None`, `tuple[bool, ...]`, `Finetune`): only other fields are checked here."""
    if annotation is bool or annotation is Any:
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True  # its own fields are checked when it is validated
    return any(_mentions_bool(arg) for arg in typing.get_args(annotation) if arg is not Ellipsis)


def _holds_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, list | tuple):
        return any(isinstance(item, bool) for item in value)
    if isinstance(value, dict):
        return any(isinstance(item, bool) for item in value.values())
    return False


class ConfigModel(BaseModel):
    """The base of every config the project validates (search, farm, measure settings, profiles).

    Frozen values; unknown keys refused; no NaN or infinity in any float (NaN would make a
    constraint's comparison always false: a hard limit silently switched off); no `true`/`false`
    where a number is expected (pydantic's lax mode reads `trials: true` as 1). Every numeric
    field states its range with `ge`/`gt` and `le`/`lt` (tests/test_config_ranges.py checks that
    each one does).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, data: Any) -> Any:
        # A model-level check: pydantic forbids field validators on a union's discriminator field.
        if not isinstance(data, dict):
            return data
        for name, field in cls.model_fields.items():
            for key in {name, field.alias or name}:
                if key in data and _holds_bool(data[key]) and not _mentions_bool(field.annotation):
                    raise ValueError(f"{key}: expected a number, got {str(data[key]).lower()}")
        return data


def describe_validation_error(exc: ValidationError) -> str:
    """The first pydantic error as `field.path: message` on one line. A misspelt key shows up
    twice (the real field missing, the typo unknown): the typo is what to report."""
    errors = exc.errors()
    missing = {tuple(e["loc"]) for e in errors if e["type"] == "missing"}
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] != "extra_forbidden" or not loc:
            continue
        siblings = [str(m[-1]) for m in missing if m[:-1] == loc[:-1]]
        close = difflib.get_close_matches(str(loc[-1]), siblings, n=1)
        if close:
            location = ".".join(str(part) for part in loc)
            return f"{location}: unknown field; did you mean {close[0]!r}?"
    error = errors[0]
    location = ".".join(str(part) for part in error["loc"]) or "(top level)"
    return f"{location}: {error['msg']}"


def absolute(base: Path, path: Path) -> Path:
    """`path` made absolute against `base` (`~` expanded; symlinks kept as the user wrote them):
    what every config loader does to the paths a file names, so no later change of working
    directory (Ray Tune gives each trial its own) can move them."""
    path = path.expanduser()
    return path if path.is_absolute() else Path(os.path.normpath(base / path))


def load_yaml_model(path: str | Path, model: type[ModelT], what: str, expected: str) -> ModelT:
    """Read `path` as YAML and validate it as `model`; `what` names it in errors ("farm config")."""
    path = Path(path)
    data = load_yaml_file(path, what)
    if not isinstance(data, dict):
        raise AdacompError(f"{what} {str(path)!r}: expected a mapping ({expected})")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise AdacompError(f"{what} {str(path)!r}: {describe_validation_error(exc)}") from None
