"""Plain-text tables for the terminal (and Markdown in notes): no dependency, aligned columns."""

from __future__ import annotations

import re
from collections.abc import Sequence

_NUMERIC = re.compile(r"^[-+]?\d")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(_NUMERIC.match(row[i]) or not row[i] for row in cells[1:]) for i in range(len(headers))]
    lines = []
    for i, row in enumerate(cells):
        aligned = (c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric, strict=True))
        lines.append("  ".join(aligned).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# Sizes are printed in one unit system everywhere: binary units named as such (KiB = 1024 B,
# MiB = 2**20 B). Memory is measured in MiB (resident sizes / 2**20 on every device backend,
# the phone's own tools count in KiB), so storage printed in the same system compares with it
# directly; the IEC names say which system it is, where "KB" and "MB" left it to guess (the
# same 623,592 bytes printed as 609.0 KB in one command and 623.6 KB in another).
KIB = 1024


def human_bytes(n: float) -> str:
    """`n` bytes in the largest binary unit that keeps the number at 1 or more (B to GiB)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < KIB or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= KIB
    raise AssertionError("unreachable")


def kib(n: float) -> str:
    """`n` bytes in KiB, one decimal, without the unit: a table column headed "... KiB"."""
    return f"{n / KIB:.1f}"


def human_count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)
