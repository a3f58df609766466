"""One guard at the loading boundary for every JSON and YAML file the project reads.

A parser alone leaves a loader open to input that is well-formed but hostile or careless: YAML
nested 20,000 deep (a RecursionError), an integer of 5,000 digits (a ValueError from Python's
int-size limit) or of 400 (an OverflowError wherever it meets a float), NaN that silently
disables a comparison, a NUL byte in a path, a file of gigabytes, an alias bomb. Every loader
goes through here, so each of those becomes one line naming the file and the place in it
(an AdacompError: exit 2 at the CLI) before any validation or work starts.

The limits are generous for what the project writes (configs of a few KiB, manifests and plans
of tens of KiB, a study's state of a few MiB) and small against what breaks a process.
Only the standard library here (and PyYAML, imported when a YAML file is read): the runtime
that ships to the device uses it too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adacomp.errors import AdacompError


@dataclass(frozen=True)
class LoadLimits:
    max_bytes: int = 64 * 1024 * 1024  # the file, before parsing
    max_depth: int = 64  # nested lists and mappings
    max_number_chars: int = 40  # digits of one number (float64 needs 17; an int64 19)
    max_items: int = 2_000_000  # values in the document, counting a YAML alias each time it is used


DEFAULT_LIMITS = LoadLimits()


class _Refused(Exception):
    """Internal: a limit broken at `where` (a path such as `layers.conv1[0].amount`)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


def _place(where: str) -> str:
    if len(where) > 80:  # a path 600 levels deep says no more than its first steps
        where = where[:77] + "..."
    return f"{where}: " if where else ""


def check_value(data: Any, limits: LoadLimits = DEFAULT_LIMITS) -> None:
    """Walk a parsed document without recursion; raise _Refused at the first broken limit.

    Refused: nesting beyond `max_depth`, more than `max_items` values, integers beyond
    `max_number_chars` digits, NaN and infinities, NUL characters in strings, keys that are not
    strings (every file the project reads keys its mappings by name).
    """
    max_bits = int(limits.max_number_chars * math.log2(10)) + 1
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    items = 0
    while stack:
        value, where, depth = stack.pop()
        items += 1
        if items > limits.max_items:
            raise _Refused("", f"more than {limits.max_items} values")
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, _LongNumber):
            raise _Refused(where, f"a number longer than {limits.max_number_chars} digits")
        if isinstance(value, int):
            if value.bit_length() > max_bits:
                raise _Refused(where, f"a number longer than {limits.max_number_chars} digits")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise _Refused(where, f"{value} is not a finite number")
        elif isinstance(value, str):
            if "\x00" in value:
                raise _Refused(where, "contains a NUL character")
        elif isinstance(value, dict | list | tuple):
            if depth >= limits.max_depth:
                raise _Refused(where, f"nested deeper than {limits.max_depth} levels")
            if isinstance(value, dict):
                for key, child in value.items():
                    if not isinstance(key, str):
                        raise _Refused(where, f"key {str(key)[:40]!r} is not a string")
                    if "\x00" in key:
                        raise _Refused(where, "a key contains a NUL character")
                    stack.append((child, f"{where}.{key}" if where else key, depth + 1))
            else:
                for index, child in enumerate(value):
                    stack.append((child, f"{where}[{index}]", depth + 1))


class _LongNumber:
    """What the JSON parser returns for a number past the limit, so the walk can say where."""


def _number(limits: LoadLimits, convert: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float | _LongNumber:
        if len(text.lstrip("-")) > limits.max_number_chars:
            return _LongNumber()  # never converted: 5,000 digits would pass Python's own limit
        return convert(text)

    return parse


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "integer string conversion" in text:  # Python's own limit, past ours
        return "a number of thousands of digits"
    return text[:120]


def parse_json(text: str | bytes, source: str, limits: LoadLimits = DEFAULT_LIMITS) -> Any:
    """`text` as JSON under `limits`; every failure is one AdacompError line starting with `source`."""
    if len(text) > limits.max_bytes:
        raise AdacompError(f"{source}: {len(text)} bytes; at most {limits.max_bytes} are read")
    try:
        data = json.loads(
            text,
            parse_int=_number(limits, int),
            parse_float=_number(limits, float),
            parse_constant=float,  # NaN, Infinity: refused by the walk, with their place
        )
        check_value(data, limits)
    except _Refused as exc:
        raise AdacompError(f"{source}: {_place(exc.where)}{exc.message}") from None
    except json.JSONDecodeError as exc:
        raise AdacompError(
            f"{source}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise AdacompError(f"{source}: nested deeper than {limits.max_depth} levels") from None
    except UnicodeDecodeError as exc:
        raise AdacompError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:  # e.g. an integer past Python's digit limit
        raise AdacompError(f"{source}: not valid JSON ({_reason(exc)})") from None
    return data


def parse_yaml(text: str, source: str, limits: LoadLimits = DEFAULT_LIMITS) -> Any:
    """`text` as YAML (`safe_load` only: no objects constructed) under `limits`."""
    import yaml

    if len(text) > limits.max_bytes:
        raise AdacompError(f"{source}: {len(text)} bytes; at most {limits.max_bytes} are read")
    try:
        data = yaml.safe_load(text)
        check_value(data, limits)
    except _Refused as exc:
        raise AdacompError(f"{source}: {_place(exc.where)}{exc.message}") from None
    except yaml.YAMLError as exc:
        raise AdacompError(f"{source}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise AdacompError(f"{source}: nested deeper than {limits.max_depth} levels") from None
    except (ValueError, OverflowError, TypeError) as exc:  # a number past Python's limits, ...
        raise AdacompError(f"{source}: not valid YAML ({_reason(exc)})") from None
    return data


def read_text(
    path: str | Path, what: str, limits: LoadLimits = DEFAULT_LIMITS, *, shown: str | None = None
) -> str:
    """A file's UTF-8 text, refused in one line when missing, unreadable or too large.

    `what` names the file in messages ("search config 'x.yaml' does not exist"); `shown`
    replaces "what 'path'" where a caller names files its own way. The size is checked first.
    """
    path = Path(path)
    shown = shown or f"{what} {str(path)!r}"
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise AdacompError(f"{shown}: {size} bytes; at most {limits.max_bytes} are read")
        with path.open("rb") as f:
            data = f.read(limits.max_bytes + 1)
    except FileNotFoundError:
        raise AdacompError(f"{shown} does not exist") from None
    except IsADirectoryError:
        raise AdacompError(f"{shown} is a directory, not a file") from None
    except OSError as exc:
        raise AdacompError(f"{shown} cannot be read: {exc.strerror or exc}") from None
    if len(data) > limits.max_bytes:  # it grew while we read it, or it is not a regular file
        raise AdacompError(f"{shown}: more than {limits.max_bytes} bytes; at most that many are read")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AdacompError(f"{shown}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def load_json_file(path: str | Path, what: str, limits: LoadLimits = DEFAULT_LIMITS) -> Any:
    """Read and parse a JSON file under `limits`; errors name `what` and the file."""
    return parse_json(read_text(path, what, limits), f"{what} {str(path)!r}", limits)


def load_yaml_file(path: str | Path, what: str, limits: LoadLimits = DEFAULT_LIMITS) -> Any:
    """Read and parse a YAML file under `limits`; errors name `what` and the file."""
    return parse_yaml(read_text(path, what, limits), f"{what} {str(path)!r}", limits)
