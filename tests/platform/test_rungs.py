"""Multi-fidelity: the stages of a fine-tune, ASHA's stopping rule, the rung files a resume reads,
staged training against one run, and the scheduler under a real Tune search."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from adacomp.platform.evaluate.rungs import STOPPED_EARLY, RungPoint, RungResult, goes_on, rung_steps
from adacomp.platform.results.ledger import TrialRecord
from adacomp.platform.search.rungs import RungHalving, RungStore
from adacomp.platform.search_config import Fidelity
from adacomp.search_spaces import CompressionPlan, Step
from adacomp.tasks import TrainBudget, train

PLAN = CompressionPlan.from_mapping({"fc1": [Step.of("low_rank", rank_fraction=0.25)]})


@pytest.mark.parametrize(
    ("total", "rungs", "eta", "expected"),
    [
        (27, 3, 3, (3, 9, 27)),
        (38, 3, 3, (4, 13, 38)),
        (100, 2, 4, (25, 100)),
        (5, 3, 3, (1, 2, 5)),
        (2, 4, 3, (1, 2)),  # too small for four stages: as many as fit
        (1, 3, 3, (1,)),
        (40, 1, 3, (40,)),
    ],
)
def test_stages_end_at_the_budget_each_eta_times_the_one_before(
    total: int, rungs: int, eta: int, expected: tuple[int, ...]
) -> None:
    assert rung_steps(total, Fidelity(rungs=rungs, eta=eta)) == expected


def _at(*objectives: float, violation: float = 0.0) -> RungPoint:
    return RungPoint(tuple(objectives), violation)


def test_one_objective_keeps_the_best_third_once_enough_were_placed() -> None:
    """With one objective the rule is ASHA's: the best ceil(n/eta) of the rung go on."""
    fidelity = Fidelity(eta=3, min_results=3)
    assert goes_on(_at(5.0), [_at(1.0), _at(2.0)], fidelity), "fewer than min_results: everything goes on"
    assert goes_on(_at(-3.0), [_at(-1.0), _at(-2.0), _at(-0.5)], fidelity)
    assert not goes_on(_at(-1.5), [_at(-1.0), _at(-2.0), _at(-3.0)], fidelity)
    assert not goes_on(_at(math.inf), [_at(-1.0), _at(-2.0), _at(-3.0)], fidelity), "not measured: worst"
    spread = [_at(-float(x)) for x in range(30)]
    kept = [s for s in range(30) if goes_on(_at(-float(s)), spread[:s] + spread[s + 1 :], fidelity)]
    assert kept == list(range(20, 30)), "a third of an evenly spread rung goes on"


def test_a_plan_on_the_front_of_its_rung_goes_on_however_many_beat_its_utility() -> None:
    """The demo's case: a plan second-best in accuracy but the smallest is on the front, while a
    scalar utility ranked it outside the best third; here it goes on, a dominated one stops."""
    fidelity = Fidelity(eta=3, min_results=3)
    earlier = [_at(-0.99, 60.0), _at(-0.985, 61.0), _at(-0.98, 62.0), _at(-0.97, 63.0), _at(-0.96, 64.0)]
    assert goes_on(_at(-0.95, 50.0), earlier, fidelity), "the smallest: non-dominated"
    assert not goes_on(_at(-0.95, 65.0), earlier, fidelity), "worse in both than all: stopped"


def test_constrained_domination_meeting_the_constraints_beats_any_objective() -> None:
    fidelity = Fidelity(eta=3, min_results=3)
    missing = [_at(-0.99, 1.0, violation=0.5), _at(-0.99, 1.0, violation=0.2), _at(-0.99, 1.0, violation=0.3)]
    assert goes_on(_at(-0.1, 100.0), missing, fidelity), "the only one meeting the constraints"
    assert goes_on(_at(-0.99, 1.0, violation=0.1), missing, fidelity), "the least off of those missing"
    assert not goes_on(_at(-1.0, 0.0, violation=0.9), missing, fidelity), "further off than all"
    assert not _at(-1.0, 0.0, violation=0.9).dominates(_at(-0.1, 100.0))


def test_points_of_another_shape_are_not_compared() -> None:
    """A stage recorded before multi-objective stopping has no objectives: a resumed search
    compares the new stages with each other only."""
    fidelity = Fidelity(eta=3, min_results=2)
    older = [
        RungResult.from_dict({"rung": 0, "steps": 3, "accuracy": 0.9, "score": 0.5, "seconds": 1.0}).point
    ]
    assert goes_on(_at(9.0, 9.0), [*older * 5, _at(1.0, 1.0)], fidelity), "one comparable point: too few"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    earlier=st.lists(
        st.tuples(st.tuples(*[st.floats(-1.0, 1.0)] * 3), st.sampled_from([0.0, 0.0, 0.0, 0.1, 0.5])),
        max_size=40,
    ),
    mine=st.tuples(st.tuples(*[st.floats(-1.0, 1.0)] * 3), st.sampled_from([0.0, 0.0, 0.2])),
    eta=st.integers(2, 5),
    min_results=st.integers(1, 5),
)
def test_mo_halving_never_stops_a_plan_non_dominated_at_its_rung(
    earlier: list[tuple[tuple[float, ...], float]],
    mine: tuple[tuple[float, ...], float],
    eta: int,
    min_results: int,
) -> None:
    """Issue 37: whatever was recorded at the rung, a plan that nothing recorded there dominates
    goes on; and the rule never keeps fewer than ceil(n/eta) of a rung."""
    fidelity = Fidelity(eta=eta, min_results=min_results)
    points = [RungPoint(o, v) for o, v in earlier]
    point = RungPoint(*mine)
    if not any(p.dominates(point) for p in points):
        assert goes_on(point, points, fidelity)
    everyone = [*points, point]
    if len(everyone) > min_results:
        kept = sum(goes_on(p, everyone[:i] + everyone[i + 1 :], fidelity) for i, p in enumerate(everyone))
        assert kept >= math.ceil(len(everyone) / eta)


def test_scheduler_stops_dominated_plans_and_counts_earlier_runs() -> None:
    recorded = {0: [_at(-0.1, 5.0), _at(-0.9, 5.0)]}  # placed before a resume
    scheduler = RungHalving(Fidelity(eta=2, min_results=2), recorded)

    def placed(rung: int, *objectives: float, violation: float = 0.0) -> dict[str, object]:
        return {
            "rung": rung,
            "rung_score": 0.0,
            "rung_objectives": list(objectives),
            "rung_violation": violation,
        }

    assert scheduler.on_trial_result(None, None, {"accuracy": 0.5}) == "CONTINUE"  # a final stage
    assert scheduler.on_trial_result(None, None, placed(0, -0.05, 6.0)) == "STOP"
    assert scheduler.on_trial_result(None, None, placed(0, -0.5, 1.0)) == "CONTINUE"  # the smallest
    assert scheduler.on_trial_result(None, None, placed(1, 0.0, 9.0)) == "CONTINUE"
    assert scheduler.on_trial_result(None, None, placed(0, -0.95, 6.0, violation=0.3)) == "STOP"
    assert scheduler.stopped == 2
    assert scheduler.recorded[0] == [
        _at(-0.1, 5.0), _at(-0.9, 5.0), _at(-0.05, 6.0), _at(-0.5, 1.0), _at(-0.95, 6.0, violation=0.3)
    ]  # fmt: skip


def test_rung_files_resume_a_plan_cut_short_and_settle_once_recorded(tmp_path: Path) -> None:
    store = RungStore(tmp_path / "rungs")
    model = nn.Linear(4, 2)
    history = (RungResult(0, 3, 0.5, 0.25, 1.5, objectives=(-0.5, math.inf), violation=0.1),)
    store.save(PLAN, history, model.state_dict())
    resume = store.resume(PLAN)
    assert resume is not None and resume.history == history and resume.steps == 3
    assert torch.equal(resume.state["weight"], model.weight)
    assert store.unfinished(set()) == [PLAN] and store.unfinished({PLAN.hash}) == []
    assert store.points() == {0: [RungPoint((-0.5, math.inf), 0.1)]}, "+inf written as null, read back"
    store.settle(PLAN.hash)
    assert store.resume(PLAN) is None and store.unfinished(set()) == []
    assert store.points() == {0: [RungPoint((-0.5, math.inf), 0.1)]}, "they stay: a resume compares with them"
    (tmp_path / "rungs" / f"{PLAN.hash}.pt").write_bytes(b"torn")
    assert store.resume(PLAN) is None, "a torn weights file starts the plan over"


def test_an_early_stopped_record_round_trips_and_is_never_feasible() -> None:
    record = TrialRecord(
        number=4,
        plan=PLAN,
        metrics={"accuracy": 0.97, "finetune_steps": 3.0},
        utility=0.9,
        violations=(-1.0,),
        reason=STOPPED_EARLY + "after rung 1 of 3",
        rungs=(RungResult(0, 3, 0.97, 0.9, 2.0, objectives=(-0.97,), violation=0.0),),
        stopped_at=0,
    )
    again = TrialRecord.from_dict(record.to_dict())
    assert again == record and not again.feasible, "a stopped plan never reaches a front"
    assert record.report()["rung"] == 0 and record.report()["rung_score"] == 0.9
    assert record.report()["rung_objectives"] == [-0.97] and record.report()["rung_violation"] == 0.0
    older = {k: v for k, v in record.to_dict().items() if k not in ("rungs", "stopped_at")}
    assert TrialRecord.from_dict(older).rungs == (), "a ledger line from before multi-fidelity still reads"


def test_staged_training_follows_the_one_run_schedule() -> None:
    """Stages train exactly their steps, with the lr where one whole run would have it."""
    data = torch.utils.data.TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,)))
    budget = TrainBudget(steps=12, batch_size=16, lr=0.1, schedule="cosine")
    seen: list[float] = []

    class Spy(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x)

    model = Spy(4, 2)
    original = torch.optim.AdamW.step

    def spy_step(self: torch.optim.AdamW, *args: object, **kwargs: object) -> object:
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    torch.optim.AdamW.step = spy_step  # type: ignore[method-assign,assignment]
    try:
        whole = train(model, data, budget).steps
        one_run = list(seen)
        seen.clear()
        staged = [train(model, data, budget, span=s).steps for s in ((0, 4), (4, 12))]
    finally:
        torch.optim.AdamW.step = original  # type: ignore[method-assign]
    assert whole == 12 and staged == [4, 8]
    assert seen == pytest.approx(one_run, rel=1e-6)
    with pytest.raises(Exception, match="span"):
        train(model, data, budget, span=(4, 13))
