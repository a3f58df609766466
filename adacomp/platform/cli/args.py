"""Argparse types for numbers: finite and in a stated range, or a one-line usage error (exit 2).

`type=int` takes a 400-digit seed and `type=float` takes `inf` and `nan` (an infinite fine-tune,
a NaN threshold that compares false with everything); these say what range is expected instead.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

MAX_DIGITS = 20  # a command-line number never needs more


def _describe(low: float, high: float, whole: bool) -> str:
    return f"a {'whole ' if whole else ''}number in [{low:g}, {high:g}]"


def integer(low: int, high: int) -> Callable[[str], int]:
    """A whole number in [low, high]."""

    def parse(text: str) -> int:
        stripped = text.strip().lstrip("+-")
        if not stripped.isascii() or not stripped.isdigit() or len(stripped) > MAX_DIGITS:
            raise argparse.ArgumentTypeError(f"expected {_describe(low, high, True)}, got {text[:40]!r}")
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {_describe(low, high, True)}, got {value}")
        return value

    return parse


def number(low: float, high: float, *, above_low: bool = False) -> Callable[[str], float]:
    """A finite number in [low, high] (in (low, high] with `above_low`)."""
    expected = f"a number in ({low:g}, {high:g}]" if above_low else _describe(low, high, False)

    def parse(text: str) -> float:
        if len(text) > 40:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text[:40]!r}...")
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        in_range = (low < value if above_low else low <= value) and value <= high
        if not math.isfinite(value) or not in_range:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse
