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
