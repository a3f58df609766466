"""One trial-outcome record (issue 37, part 1): a search trial's result, its ledger line and a
supernet configuration's line share the outcome fields, their meaning of feasible and their JSON."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from adacomp.platform.evaluate.outcome import Outcome
from adacomp.platform.evaluate.rungs import RungResult
from adacomp.platform.evaluate.trial import TrialResult
from adacomp.platform.results.ledger import TrialRecord
from adacomp.platform.supernet.search import SubnetRecord
from adacomp.search_spaces import CompressionPlan, Step
from adacomp.search_spaces.supernet import SubnetConfig

PLAN = CompressionPlan.from_mapping({"fc1": [Step.of("low_rank", rank_fraction=0.5)]})
OUTCOME: dict[str, Any] = {
    "metrics": {"accuracy": 0.9},
    "utility": 0.4,
    "violations": (0.0, -1.0),
    "seconds": 2.0,
}


def _records() -> list[Outcome[float] | Outcome[float | None]]:
    return [
        TrialResult(PLAN, **OUTCOME),
        TrialRecord(3, PLAN, **OUTCOME),
        SubnetRecord(3, SubnetConfig.of({"fc1": 8}, alternative={"fc1": "gap_head"}), **OUTCOME),
    ]


def test_every_record_has_the_outcome_fields_once_and_nothing_repeats_them() -> None:
    outcome = {f.name for f in dataclasses.fields(Outcome)}
    for record in _records():
        own = {f.name for f in dataclasses.fields(record)} - outcome
        assert isinstance(record, Outcome) and not own & outcome
        assert record.feasible
        assert dataclasses.replace(record, violations=(0.5,)).feasible is False
        assert dataclasses.replace(record, failed=True).feasible is False


@pytest.mark.parametrize("cls", [TrialRecord, SubnetRecord])
def test_ledger_lines_round_trip_with_one_outcome_json(cls: type[TrialRecord] | type[SubnetRecord]) -> None:
    record = next(r for r in _records() if type(r) is cls)
    data = record.to_dict()
    assert {k: data[k] for k in record.outcome_dict()} == record.outcome_dict()
    assert cls.from_dict(data) == record


def test_a_plan_stopped_at_a_rung_is_never_feasible() -> None:
    rung = RungResult(1, 10, 0.9, 0.4, 1.0)
    stopped = TrialResult(PLAN, **OUTCOME, rungs=(rung,), stopped_at=1)
    assert not stopped.feasible
    assert not TrialRecord.from_result(0, stopped).feasible
