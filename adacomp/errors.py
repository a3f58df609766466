"""The one error type a user can cause.

Anything raising :class:`AdacompError` is a problem with the input (a plan, a config, a file),
not a bug: the CLI prints its message on one line and exits with code 2. Everything else keeps
its traceback.
"""

from __future__ import annotations


class AdacompError(ValueError):
    """Bad input: the message names the field or file and what was expected."""


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (its type when it has none): for one-line
    errors and recorded reasons."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def shown(value: object, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters: a user's value in a one-line message, whatever
    its size (a 200,000-character string used to become a 200,000-character error)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
