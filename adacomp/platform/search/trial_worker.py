"""The evaluation side of a trial, in a Ray worker: what every trial needs (put in the object
store once), the per-process context built from it, and one plan's evaluation.

Kept apart from the driver (job.py) and from Tune's trainable (trial_proxy.py): this is what
the process that evaluates imports, torch and the whole compression stack with it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adacomp.device_farm import FarmConfig, MeasureSettings
from adacomp.platform.evaluate.trial import TrialContext, evaluate_plan, trial_accelerator
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


_CONTEXTS: dict[str, TrialContext] = {}


def trial_context(payload: TrialPayload) -> TrialContext:
    """Built once per worker process and search: the model, the farm's actor handles."""
    ctx = _CONTEXTS.get(payload.key)
    if ctx is None:
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
        _CONTEXTS.clear()
        _CONTEXTS[payload.key] = ctx
    return ctx


class StopEvaluation(Exception):
    """Raised at a rung boundary once the trial that asked for this evaluation was stopped."""


RungReport = Callable[[dict[str, Any]], None]


def evaluate_trial(
    params: dict[str, Any], payload: TrialPayload, on_rung_report: RungReport | None = None
) -> tuple[dict[str, Any], bytes | None]:
    """One plan evaluated end to end: its report (a TrialRecord's) and its ONNX model. A staged
    fine-tune saves its weights and hands `on_rung_report` each stage's report on the way."""
    ctx = trial_context(payload)
    ctx.accelerator = worker_accelerator(payload.config)
    plan, number = CompressionPlan.from_json(params["plan"]), int(params["trial_number"])
    store = RungStore(payload.rung_dir)

    def on_rung(staged: Any, model: torch.nn.Module) -> None:  # may never return: Tune stops it here
        store.save(plan, staged.rungs, {k: v.cpu() for k, v in model.state_dict().items()})
        if on_rung_report is not None:
            on_rung_report(TrialRecord.from_result(number, staged).report())

    staged = payload.config.fidelity.rungs > 1
    result = evaluate_plan(
        ctx,
        plan,
        seed=int(params["seed"]),
        on_rung=on_rung if staged else None,
        resume=store.resume(plan) if staged else None,
    )
    return TrialRecord.from_result(number, result).report(), result.onnx_model


# Where a pooled evaluation stands: a stage's report, the final report and model, or an error.
Event = tuple[str, Any, Any]


def pooled_events(
    params: dict[str, Any], payload: TrialPayload, threads: int
) -> Generator[Event, None, None]:
    """The evaluation as a stream of events, for `evaluate_pooled` (trial_proxy.py).

    The evaluation runs on a thread of its own so that each stage's report can be yielded while
    the next stage trains, as a Tune trial reports and trains on. When the consumer stops (Tune
    stopped the trial: the generator is closed or cancelled), the evaluation stops at its next
    stage boundary and this returns only then: the pooled worker is never handed another trial
    while this one still trains.
    """
    torch.set_num_threads(threads)  # Ray gives a zero-CPU task no thread count of its own
    events: queue.Queue[Event] = queue.Queue()
    stopped = threading.Event()

    def on_rung_report(report: dict[str, Any]) -> None:
        if stopped.is_set():
            raise StopEvaluation
        events.put(("rung", report, None))

    def work() -> None:
        try:
            report, model = evaluate_trial(params, payload, on_rung_report)
            events.put(("done", report, model))
        except StopEvaluation:
            events.put(("stopped", None, None))
        except BaseException as exc:  # handed to the consumer, raised there
            events.put(("error", exc, None))

    worker = threading.Thread(target=work, name="adacomp-evaluation", daemon=True)
    worker.start()
    try:
        while True:
            try:
                event = events.get(timeout=0.5)  # a timeout keeps the wait interruptible
            except queue.Empty:
                continue
            if event[0] == "error":
                raise event[1]
            yield event
            if event[0] != "rung":
                return
    finally:
        stopped.set()
        worker.join()


def worker_accelerator(config: SearchConfig) -> Accelerator:
    """Where this worker's trials fine-tune: the GPU Ray assigned it (`resources.gpu` > 0), else
    the CPU. Ray's ids are None outside a Ray worker (a trial run in-process, as in tests)."""
    import ray

    gpu_ids = ray.get_gpu_ids() if ray.is_initialized() and config.resources.gpu > 0 else None
    return trial_accelerator(config.resources, gpu_ids)


def trial_dirname(trial: Any) -> str:
    return f"trial_{int(trial.config.get('trial_number', -1)):04d}_{trial.trial_id}"
