"""The trial's side of a search, in a Ray worker: what every trial needs (put in the object
store once), the per-worker context built from it, and Tune's trainable.

Kept apart from the driver (job.py): this is all a worker process imports and runs.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adacomp.device_farm import FarmConfig, MeasureSettings
from adacomp.platform.evaluate.evaluators import PlanEvaluator, make_evaluator
from adacomp.platform.evaluate.trial import TrialContext, trial_accelerator
from adacomp.platform.results.ledger import TrialRecord
from adacomp.platform.search.rungs import RungStore
from adacomp.platform.search_config import SearchConfig
from adacomp.search_spaces import CompressionPlan
from adacomp.tasks import Task
from adacomp.tasks.accelerator import Accelerator


@dataclass(frozen=True)
class TrialPayload:
    """What every trial needs, put in Ray's object store once (tune.with_parameters)."""

    key: str
    config: SearchConfig
    task: Task
    weights: dict[str, torch.Tensor]
    baseline: dict[str, float | None]
    calibration: list[np.ndarray]
    settings: MeasureSettings
    farm: FarmConfig
    rung_dir: Path  # where staged fine-tunes keep their weights between stages (search/rungs.py)
    # The trained supernet's weights (`evaluation: supernet`), trained by the search before any trial.
    supernet_weights: dict[str, torch.Tensor] | None = None


_EVALUATORS: dict[str, PlanEvaluator] = {}


def trial_evaluator(payload: TrialPayload) -> PlanEvaluator:
    """Built once per worker process and search: the model, the farm's actor handles, and in
    supernet mode the trained supernet (loaded once, shared by every plan of this worker)."""
    evaluator = _EVALUATORS.get(payload.key)
    if evaluator is None:
        import ray

        from adacomp.device_farm import Farm
        from adacomp.platform.search.ray_farm import RayFarm

        model = payload.task.build_model()
        model.load_state_dict(payload.weights)
        model.eval()
        farm = RayFarm(payload.farm) if ray.is_initialized() else Farm(payload.farm)
        ctx = TrialContext(
            config=payload.config,
            task=payload.task,
            model=model,
            farm=farm,
            settings=payload.settings,
            calibration=payload.calibration,
            baseline=payload.baseline,
        )
        evaluator = make_evaluator(ctx, payload.supernet_weights)
        _EVALUATORS.clear()
        _EVALUATORS[payload.key] = evaluator
    return evaluator


def run_trial(params: dict[str, Any], payload: TrialPayload) -> None:
    """The Tune trainable: one plan evaluated end to end, reported once (with its ONNX model)."""
    from ray import tune

    evaluator = trial_evaluator(payload)
    evaluator.ctx.accelerator = worker_accelerator(payload.config)
    plan, number = CompressionPlan.from_json(params["plan"]), int(params["trial_number"])
    store = RungStore(payload.rung_dir)

    def on_rung(staged: Any, model: torch.nn.Module) -> None:  # may never return: Tune stops it here
        store.save(plan, staged.rungs, {k: v.cpu() for k, v in model.state_dict().items()})
        tune.report(TrialRecord.from_result(number, staged).report())

    staged = payload.config.fidelity.rungs > 1 and evaluator.trains
    result = evaluator.evaluate(
        plan,
        seed=int(params["seed"]),
        on_rung=on_rung if staged else None,
        resume=store.resume(plan) if staged else None,
    )
    report = TrialRecord.from_result(number, result).report()
    if result.onnx_model is None:
        tune.report(report)
        return
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "model.onnx").write_bytes(result.onnx_model)
        tune.report(report, checkpoint=tune.Checkpoint.from_directory(tmp))


def worker_accelerator(config: SearchConfig) -> Accelerator:
    """Where this worker's trials fine-tune: the GPU Ray assigned it (`resources.gpu` > 0), else
    the CPU. Ray's ids are None outside a Ray worker (a trial run in-process, as in tests)."""
    import ray

    gpu_ids = ray.get_gpu_ids() if ray.is_initialized() and config.resources.gpu > 0 else None
    return trial_accelerator(config.resources, gpu_ids)


def trial_dirname(trial: Any) -> str:
    return f"trial_{int(trial.config.get('trial_number', -1)):04d}_{trial.trial_id}"
