"""The one error type a user can cause.

Anything raising :class:`AdacompError` is a problem with the input (a plan, a config, a file),
not a bug: the CLI prints its message on one line and exits with code 2. Everything else keeps
its traceback.
"""

from __future__ import annotations


class AdacompError(ValueError):
    """Bad input: the message names the field or file and what was expected."""
