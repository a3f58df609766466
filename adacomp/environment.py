"""Settings adacomp reads from the environment, parsed in one place so that every process (the
CLI, a Ray trial worker, a device agent) reads them alike, and the CLI refuses a bad one before
any work instead of a trial failing on it later."""

from __future__ import annotations

import math
import os

from adacomp.errors import AdacompError

__all__ = ["EXPORT_MEMO_VARIABLE", "check_environment", "export_memo_limit_bytes"]

EXPORT_MEMO_VARIABLE = "ADACOMP_EXPORT_MEMO_MIB"
DEFAULT_EXPORT_MEMO_MIB = 512


def export_memo_limit_bytes() -> int:
    """The export memo's bound (search_spaces/export_memo.py), from `ADACOMP_EXPORT_MEMO_MIB`
    (default 512 MiB; 0 turns the memo off)."""
    raw = os.environ.get(EXPORT_MEMO_VARIABLE, str(DEFAULT_EXPORT_MEMO_MIB))
    try:
        mib = float(raw)
    except ValueError:
        mib = -1.0
    if not (math.isfinite(mib) and mib >= 0):
        raise AdacompError(
            f"{EXPORT_MEMO_VARIABLE}={raw!r}: expected a number of MiB >= 0 (0 turns the export memo off)"
        )
    return int(mib * 1024 * 1024)


def check_environment() -> None:
    """Raises AdacompError (one line) for the first environment setting that is unusable."""
    export_memo_limit_bytes()
