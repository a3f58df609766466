"""Loading a YAML config into a pydantic model, with one-line errors naming the file and field.

Shared by the farm config and the search config: safe_load only, a mapping at the top, the first
validation error reported as `file: field.path: message`.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from adacomp.errors import AdacompError

ModelT = TypeVar("ModelT", bound=BaseModel)


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


def load_yaml_model(path: str | Path, model: type[ModelT], what: str, expected: str) -> ModelT:
    """Read `path` as YAML and validate it as `model`; `what` names it in errors ("farm config")."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise AdacompError(f"{what} {str(path)!r} does not exist") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise AdacompError(f"{what} {str(path)!r} cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        raise AdacompError(f"{what} {str(path)!r}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise AdacompError(f"{what} {str(path)!r}: expected a mapping ({expected})")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise AdacompError(f"{what} {str(path)!r}: {describe_validation_error(exc)}") from None
