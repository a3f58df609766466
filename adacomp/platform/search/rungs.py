"""Multi-fidelity on Ray Tune: the rung files a killed search resumes from, and the scheduler
that stops a plan between fine-tune stages (the rule is adacomp/platform/evaluate/rungs.py).

Files, in `<search>/rungs/`, one pair per plan being fine-tuned, keyed by its hash so that any
strategy that proposes the plan again (an Optuna point, the RL agent's first plans) picks it up:
`<hash>.json` (the plan and its scored stages) and `<hash>.pt` (the weights after the last
stage). A trial writes them after every stage but the last, weights first, each atomically; the
driver deletes the weights once the plan's record is in the ledger. A plan with weights but no
record was cut short: a resumed search proposes it first and its trial continues after the
last finished stage. The scores in the JSON files seed the scheduler of a resumed search, so its
stopping rule compares against every stage ever scored, not only this run's. Like Tune's own
storage, the folder must be shared by every node of a cluster.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from adacomp.atomic import atomic_path, write_atomically
from adacomp.platform.evaluate.rungs import RungPoint, RungResult, goes_on
from adacomp.platform.evaluate.trial import RungResume
from adacomp.platform.search_config import Fidelity
from adacomp.search_spaces import CompressionPlan


class RungStore:
    """The rung files of one search (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _paths(self, plan_hash: str) -> tuple[Path, Path]:
        return self.directory / f"{plan_hash}.json", self.directory / f"{plan_hash}.pt"

    def save(self, plan: CompressionPlan, history: Sequence[RungResult], state: Mapping[str, Any]) -> None:
        """After a stage: the weights, then the stages (a kill between leaves the older pair)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        info, weights = self._paths(plan.hash)
        with atomic_path(weights) as temporary:
            torch.save(dict(state), temporary)
        text = json.dumps({"plan": json.loads(plan.to_json()), "rungs": [r.to_dict() for r in history]})
        write_atomically(info, text)

    def resume(self, plan: CompressionPlan) -> RungResume | None:
        """The finished stages of a plan cut short, or None (a plan never started, or settled)."""
        info, weights = self._paths(plan.hash)
        if not (info.exists() and weights.exists()):
            return None
        try:
            history = tuple(RungResult.from_dict(r) for r in json.loads(info.read_text())["rungs"])
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception:  # a torn file (torch's unpickler raises many kinds): the plan starts over
            return None
        return RungResume(state, history) if history else None

    def settle(self, plan_hash: str) -> None:
        """The plan's record is in the ledger: its weights are no longer needed (its scores are)."""
        self._paths(plan_hash)[1].unlink(missing_ok=True)

    def unfinished(self, finished: set[str]) -> list[CompressionPlan]:
        """Plans cut short mid-fine-tune (weights kept, no record among `finished` hashes)."""
        plans = []
        for info in sorted(self.directory.glob("*.json")):
            if info.stem in finished or not self._paths(info.stem)[1].exists():
                continue
            try:
                plans.append(CompressionPlan.from_json(json.dumps(json.loads(info.read_text())["plan"])))
            except (OSError, ValueError, KeyError):
                continue
        return plans

    def points(self) -> dict[int, list[RungPoint]]:
        """Every plan placed at each rung by this search, all runs of it."""
        found: dict[int, list[RungPoint]] = {}
        for info in sorted(self.directory.glob("*.json")):
            try:
                rungs = [RungResult.from_dict(r) for r in json.loads(info.read_text())["rungs"]]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            for r in rungs:
                found.setdefault(r.rung, []).append(r.point)
        return found


class RungHalving(FIFOScheduler):
    """Tune's scheduler for staged fine-tunes: a result that carries a rung's objectives is let
    on or stopped by MO-ASHA's rule (evaluate/rungs.py) over every plan recorded at that rung
    (this run's and, on a resume, the earlier runs'). Results without (the final stage) pass."""

    def __init__(self, fidelity: Fidelity, recorded: Mapping[int, Sequence[RungPoint]]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.fidelity = fidelity
        self.recorded = {rung: list(points) for rung, points in recorded.items()}
        self.stopped = 0

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if "rung_objectives" not in result:
            return str(TrialScheduler.CONTINUE)
        earlier = self.recorded.setdefault(int(result["rung"]), [])
        point = RungPoint(tuple(float(v) for v in result["rung_objectives"]), float(result["rung_violation"]))
        on = goes_on(point, earlier, self.fidelity)
        earlier.append(point)
        if not on:
            self.stopped += 1
        return str(TrialScheduler.CONTINUE if on else TrialScheduler.STOP)
