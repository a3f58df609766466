"""Multi-fidelity: the stages of a fine-tune, ASHA's stopping rule, the rung files a resume reads,
staged training against one run, and the scheduler under a real Tune search."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from adacomp.platform.evaluate.rungs import STOPPED_EARLY, RungResult, goes_on, rung_steps
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


def test_asha_rule_keeps_the_best_third_once_enough_were_scored() -> None:
    fidelity = Fidelity(eta=3, min_results=3)
    assert goes_on(-5.0, [1.0, 2.0], fidelity), "fewer than min_results scored: everything goes on"
    assert goes_on(3.0, [1.0, 2.0, 0.5], fidelity)
    assert not goes_on(1.5, [1.0, 2.0, 3.0], fidelity)
    assert not goes_on(math.nan, [1.0, 2.0, 3.0], fidelity)
    kept = [s for s in range(30) if goes_on(float(s), [float(x) for x in range(30)], fidelity)]
    assert kept == list(range(20, 30)), "a third of an evenly spread rung goes on"


def test_scheduler_stops_below_the_cut_and_counts_earlier_runs() -> None:
    scheduler = RungHalving(Fidelity(eta=2, min_results=2), {0: [0.1, 0.9]})  # scored before a resume
    assert scheduler.on_trial_result(None, None, {"accuracy": 0.5}) == "CONTINUE"  # a final stage
    assert scheduler.on_trial_result(None, None, {"rung": 0, "rung_score": 0.2}) == "STOP"
    assert scheduler.on_trial_result(None, None, {"rung": 0, "rung_score": 0.95}) == "CONTINUE"
    assert scheduler.on_trial_result(None, None, {"rung": 1, "rung_score": 0.0}) == "CONTINUE"
    assert scheduler.stopped == 1 and scheduler.recorded[0] == [0.1, 0.9, 0.2, 0.95]


def test_rung_files_resume_a_plan_cut_short_and_settle_once_recorded(tmp_path: Path) -> None:
    store = RungStore(tmp_path / "rungs")
    model = nn.Linear(4, 2)
    history = (RungResult(0, 3, 0.5, 0.25, 1.5),)
    store.save(PLAN, history, model.state_dict())
    resume = store.resume(PLAN)
    assert resume is not None and resume.history == history and resume.steps == 3
    assert torch.equal(resume.state["weight"], model.weight)
    assert store.unfinished(set()) == [PLAN] and store.unfinished({PLAN.hash}) == []
    assert store.scores() == {0: [0.25]}
    store.settle(PLAN.hash)
    assert store.resume(PLAN) is None and store.unfinished(set()) == []
    assert store.scores() == {0: [0.25]}, "the scores stay: a resumed scheduler compares against them"
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
        rungs=(RungResult(0, 3, 0.97, 0.9, 2.0),),
        stopped_at=0,
    )
    again = TrialRecord.from_dict(record.to_dict())
    assert again == record and not again.feasible, "a stopped plan never reaches a front"
    assert record.report()["rung"] == 0 and record.report()["rung_score"] == 0.9
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
