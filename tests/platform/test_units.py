"""One unit system for sizes everywhere (issue 20, item 6): the same 623,592 bytes printed as
"609.0 KB" by `search`/`pareto` and "623.6 KB" by `supernet search`. Sizes are binary units with
IEC names (KiB, MiB) in every table, line, label and message; a scan of the package's strings
keeps a "KB" or "MB" from coming back."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

from adacomp.platform.results.ledger import TrialRecord
from adacomp.platform.results.snapshot import format_front
from adacomp.platform.search_config import UNITS, SearchConfig
from adacomp.platform.supernet.search import SubnetRecord, SupernetSearchResult, _line
from adacomp.platform.table import human_bytes
from adacomp.search_spaces import CompressionPlan
from adacomp.search_spaces.supernet.arch import SubnetConfig

REPO = Path(__file__).resolve().parents[2]
BYTES = 623_592  # the model: 608.98 KiB, 623.59 kB
CONFIG = SearchConfig.model_validate(
    {
        "name": "units",
        "task": "digits",
        "targets": ["pixel4"],
        "objectives": [{"metric": "accuracy"}, {"metric": "storage"}],
        "supernet": {"trials": 4},
    }
)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (BYTES, "609.0 KiB"),
        (3 * 2**20, "3.0 MiB"),
        (5 * 2**30, "5.0 GiB"),
    ],
)
def test_human_bytes_uses_binary_units_named_as_such(n: int, text: str) -> None:
    assert human_bytes(n) == text


def test_search_pareto_and_supernet_print_the_same_bytes_the_same_way(tmp_path: Path) -> None:
    metrics = {"accuracy": 0.9, "accuracy_drop": 1.0, "storage": float(BYTES), "latency_pixel4": 0.5}
    baseline = {"accuracy": 0.91, "storage": float(BYTES), "latency_pixel4": 0.6}
    front = format_front(
        CONFIG,
        [TrialRecord(0, CompressionPlan(), metrics=metrics, utility=1.0, violations=())],
        dict(baseline),
    )
    assert "609.0 KiB" in front and "KB" not in front

    record = SubnetRecord(0, SubnetConfig(), metrics=metrics, utility=1.0, violations=())
    assert "609.0 KiB" in _line(CONFIG, record, 1)
    result = SupernetSearchResult(CONFIG, tmp_path, [record], dict(baseline), "run", "uri", 1.0)
    header, _, baseline_row, row = result.table("pixel4").splitlines()
    assert "storage KiB" in header and "KB" not in header
    assert " 609.0 " in baseline_row and " 609.0 " in row


def test_memory_is_labelled_in_the_unit_it_is_measured_in() -> None:
    assert UNITS["memory"] == "MiB"  # resident sizes / 2**20 on every device backend


# A size unit in a string: "12 KB", "KB)", "memory MB"; not "MiB", not "KiB", not a word.
_DECIMAL_NAME = re.compile(r"(?<![A-Za-z])(?:KB|kB|MB|GB)(?![A-Za-z])")
_STRINGS = {tokenize.STRING, *(getattr(tokenize, n) for n in ("FSTRING_MIDDLE",) if hasattr(tokenize, n))}


def test_no_string_in_the_package_names_a_size_in_kb_or_mb() -> None:
    found = []
    for path in sorted((REPO / "adacomp").rglob("*.py")):
        for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            if token.type in _STRINGS and _DECIMAL_NAME.search(token.string):
                found.append(f"{path.relative_to(REPO)}:{token.start[0]}: {token.string.strip()[:80]}")
    assert not found, "sizes are KiB/MiB everywhere (adacomp/platform/table.py):\n" + "\n".join(found)
