"""Loading a YAML config into a pydantic model, with one-line errors naming the file and field.

Shared by the farm config and the search config: safe_load only, a mapping at the top, the first
validation error reported as `file: field.path: message`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from adacomp.errors import AdacompError

ModelT = TypeVar("ModelT", bound=BaseModel)


def describe_validation_error(exc: ValidationError) -> str:
    """The first pydantic error as `field.path: message` on one line."""
    error = exc.errors()[0]
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
