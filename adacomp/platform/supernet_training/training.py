"""`adacomp supernet train`: build a supernet from the task's trained model and ensemble-train it.

Files live in `<output.dir>/<name>/supernet/`: `checkpoints/` (resumable, see training.py),
`supernet.safetensors` (the finished weights), `layout.json` (what is elastic and what is not,
and why) and `train.json` (the MLflow run to continue on resume). One MLflow run per training,
tagged `adacomp.kind=supernet-train`: losses per step, validation accuracy of the largest and
smallest configurations at each checkpoint, the layout and the weights as artifacts.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from adacomp.errors import AdacompError
from adacomp.platform.evaluate.evaluators.supernet import bn_batches, extract_ready
from adacomp.platform.evaluate.trial import trial_accelerator
from adacomp.platform.results.job_dir import JobDir
from adacomp.platform.results.tracking import DIR_TAG, KIND_TAG, SEARCH_TAG, SearchTracker
from adacomp.platform.search_config import Log, SearchConfig, as_search_config, silent
from adacomp.platform.supernet_training.options import ensemble_budget, supernet_options
from adacomp.search_spaces.supernet import (
    EnsembleReport,
    StepLog,
    Supernet,
    load_checkpoint,
    train_supernet,
)
from adacomp.search_spaces.supernet.alternatives import BranchFit
from adacomp.tasks import Task, evaluate, load_task, pretrained_model

WEIGHTS_FILE = "supernet.safetensors"
LOG_EVERY = 10  # steps between loss points in MLflow


def supernet_dir(config: SearchConfig) -> Path:
    return (config.output.dir / config.name / "supernet").resolve()


def identity(config: SearchConfig) -> dict[str, Any]:
    """What the weights depend on: a checkpoint from other settings is refused, not mixed in."""
    s = config.supernet
    options: dict[str, Any] = {"width": list(s.width), "rank": list(s.rank), "depth": s.depth}
    alternatives = supernet_options(config).alternatives
    if alternatives:  # absent when none, so that checkpoints from before alternatives still resume
        options["alternatives"] = list(alternatives)
    if s.residual_width:  # absent when off, so that checkpoints from before it still resume
        options["residual_width"] = True
    return {"task": config.task, "seed": config.seed, "options": options}


def build_supernet(config: SearchConfig) -> tuple[Task, nn.Module, Supernet]:
    """The task, its trained uncompressed model, and a fresh supernet built from it."""
    task = load_task(config.task)
    model = pretrained_model(task, seed=config.seed)
    return task, model, Supernet.build(model, task.example_input(2), supernet_options(config))


def training_cost(config: SearchConfig) -> tuple[int, float]:
    """(steps, seconds) the trained supernet of `config` cost, as its training recorded them
    (seconds 0 for a supernet trained before they were recorded)."""
    state = JobDir(supernet_dir(config), "train.json", f"a supernet for {config.name!r}").load()
    return int(state.get("train_steps", config.supernet.steps)), float(state.get("train_seconds", 0.0))


def check_layout(directory: Path, supernet: Supernet) -> None:
    """Refuse weights in `directory` trained for another elastic layout than `supernet`'s (with
    residual streams elastic, and read without, or the other way): their channels were put in
    importance order per other groups, so narrower widths would keep arbitrary channels. Weights
    load either way (an elastic layer holds the full tensor): only the layout tells."""
    path = directory / "layout.json"
    if not path.is_file():
        return
    try:
        trained = json.loads(path.read_text())["layout"]
    except (ValueError, KeyError, TypeError):
        raise AdacompError(f"{path}: expected the JSON `adacomp supernet train` writes") from None
    current = supernet.describe()["layout"]
    assert isinstance(current, dict)

    def widths(layout: dict[str, Any]) -> list[list[str]]:
        groups = layout.get("groups", []) if isinstance(layout, dict) else []
        return sorted(sorted([g.get("producer", ""), *g.get("joined", [])]) for g in groups)

    if widths(trained) != widths(current):
        raise AdacompError(
            f"{directory}: its supernet was trained with other elastic widths than this config's "
            "(supernet.residual_width as it was trained?); change 'name' to train a new one"
        )


def load_trained_supernet(config: SearchConfig) -> tuple[Task, nn.Module, Supernet]:
    path = supernet_dir(config) / WEIGHTS_FILE
    if not path.is_file():
        raise AdacompError(
            f"no trained supernet for {config.name!r} ({path} is missing); run `adacomp supernet train` first"
        )
    task, model, supernet = build_supernet(config)
    check_layout(path.parent, supernet)
    try:
        supernet.load_state_dict(load_file(str(path)))
    except (RuntimeError, OSError) as error:
        raise AdacompError(
            f"{path}: does not fit this config's supernet ({str(error).splitlines()[0]})"
        ) from None
    return task, model, supernet.eval()


@dataclass(frozen=True)
class TrainResult:
    directory: Path
    run_id: str
    tracking_uri: str
    steps: int
    resumed_from: int
    seconds: float
    accuracy: dict[str, float]  # validation accuracy of "largest" and "smallest"
    layout: str


def _accuracies(task: Task, supernet: Supernet, batches: list[torch.Tensor]) -> dict[str, float]:
    space = supernet.space
    return {
        "largest": evaluate(extract_ready(supernet, space.largest(), batches), task.data.val),
        "smallest": evaluate(extract_ready(supernet, space.smallest(), batches), task.data.val),
    }


def train_supernet_job(
    config: SearchConfig | str | Path, *, resume: bool = False, log: Log | None = None
) -> TrainResult:
    """Trains (or resumes training of) the supernet of `config`; see the module docstring."""
    from adacomp.platform.evaluate.farm_targets import farm_for_targets

    say = log or silent
    config = as_search_config(config)
    # Everything checkable before any work: training never measures, but a supernet whose
    # targets the search cannot reach is minutes of training for nothing (`search` and
    # `supernet search` refuse the same config at once).
    farm_for_targets(config)
    directory = supernet_dir(config)
    job = JobDir(directory, "train.json", f"a supernet for {config.name!r}")
    state = job.open(
        resume=resume,
        identity=identity(config),
        changed=lambda fields: (
            f"supernet: settings differ from the supernet in {directory}; change 'name' to train a new one"
        ),
    )
    task, model, supernet = build_supernet(config)
    if resume:
        check_layout(directory, supernet)
    say(supernet.layout.report())
    say(f"{supernet.space.size:,} configurations share these weights")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "layout.json").write_text(json.dumps(supernet.describe(), indent=2) + "\n")
    tracker = SearchTracker.for_config(config, state.get("tracking_uri"))
    run_id = _training_run(tracker, job, state, config, supernet)
    monitor = _Monitor(tracker, run_id, config, task, supernet, say)
    try:
        report = _train(config, model, supernet, task, monitor)
    except BaseException:
        monitor.flush()
        tracker.finish(run_id, status="KILLED")
        raise
    monitor.flush()
    _report_branch_fits(report.branch_fits, tracker, run_id, say)
    found = load_checkpoint(directory / "checkpoints")
    assert found is not None
    if config.supernet.workers > 1:
        supernet.load_state_dict(found[0])  # the workers trained their own copies
    shutil.copyfile(found[2] / WEIGHTS_FILE, directory / WEIGHTS_FILE)
    # The last checkpoint (always the final step) already scored these weights.
    accuracy = monitor.checked.get(report.steps) or monitor.accuracies()
    tracker.log_series(run_id, [(f"final_val_accuracy_{k}", v, report.steps) for k, v in accuracy.items()])
    # What these weights cost, kept with them: a search that reuses them reports it too.
    spent = float(job.load().get("train_seconds", 0.0)) + report.seconds
    job.save({**job.load(), "train_steps": report.steps, "train_seconds": spent})
    tracker.log_series(run_id, [("train_seconds", spent, report.steps)])
    tracker.log_files(run_id, [directory / WEIGHTS_FILE])
    tracker.finish(run_id)
    return TrainResult(
        directory=directory,
        run_id=run_id,
        tracking_uri=tracker.tracking_uri,
        steps=report.steps,
        resumed_from=report.resumed_from,
        seconds=spent,
        accuracy=accuracy,
        layout=supernet.layout.report(),
    )


def _report_branch_fits(fits: list[BranchFit], tracker: SearchTracker, run_id: str, say: Log) -> None:
    """How close each alternative branch came to its layer's output when distilled (relative
    error before -> after), said and logged on the training run (`branch_error.<layer>.<technique>`)."""
    if not fits:
        return
    say(
        "alternatives distilled to their layer's output (relative error): "
        + ", ".join(f"{f.layer} {f.technique} {f.before:.3f} -> {f.after:.3f}" for f in fits)
    )
    tracker.log_series(run_id, [(f"branch_error.{f.layer}.{f.technique}", f.after, 0) for f in fits])


def _training_run(
    tracker: SearchTracker, job: JobDir, state: dict[str, Any], config: SearchConfig, supernet: Supernet
) -> str:
    """The MLflow run of this training: the saved one reopened on resume, else a new one,
    recorded in the state file at once."""
    if "run_id" in state:
        run_id: str = state["run_id"]
        tracker.reopen(run_id)
        return run_id
    params: dict[str, object] = {f"supernet.{k}": v for k, v in config.supernet.model_dump().items()}
    params.update(task=config.task, seed=config.seed, configurations=supernet.space.size)
    tags = {KIND_TAG: "supernet-train", SEARCH_TAG: config.name, DIR_TAG: str(job.path)}
    run_id = tracker.start_run(f"{config.name}-supernet", tags, params)
    tracker.log_files(run_id, [job.path / "layout.json"])
    job.save({"run_id": run_id, "tracking_uri": tracker.tracking_uri, "identity": identity(config)})
    return run_id


class _Monitor:
    """What training reports: losses every LOG_EVERY steps, accuracies at each checkpoint, sent
    to MLflow at checkpoints (one call per checkpoint, not per step) and at the end."""

    def __init__(
        self,
        tracker: SearchTracker,
        run_id: str,
        config: SearchConfig,
        task: Task,
        supernet: Supernet,
        say: Log,
    ) -> None:
        self.tracker, self.run_id, self.config, self.say = tracker, run_id, config, say
        self.task, self.supernet = task, supernet
        self.batches = bn_batches(task, config)
        self.pending: list[tuple[str, float, int]] = []
        self.checked: dict[int, dict[str, float]] = {}

    def accuracies(self) -> dict[str, float]:
        return _accuracies(self.task, self.supernet, self.batches)

    def on_step(self, entry: StepLog) -> None:
        steps = self.config.supernet.steps
        if entry.step % LOG_EVERY == 0 or entry.step == steps:
            self.pending += [
                ("loss_largest", entry.largest_loss, entry.step),
                ("loss_smallest", entry.smallest_loss, entry.step),
            ]
            self.say(
                f"step {entry.step}/{steps}: loss largest {entry.largest_loss:.4f}, "
                f"smallest {entry.smallest_loss:.4f}"
            )

    def on_checkpoint(self, step: int) -> None:
        accuracy = self.checked[step] = self.accuracies()
        self.supernet.train()
        self.pending += [(f"val_accuracy_{k}", v, step) for k, v in accuracy.items()]
        self.flush()
        self.say(
            f"checkpoint at step {step}: validation accuracy largest {accuracy['largest']:.4f}, "
            f"smallest {accuracy['smallest']:.4f}"
        )

    def flush(self) -> None:
        if self.pending:
            self.tracker.log_series(self.run_id, self.pending)
            self.pending = []


def _train(
    config: SearchConfig, model: nn.Module, supernet: Supernet, task: Task, monitor: _Monitor
) -> EnsembleReport:
    """Ensemble training here, or on Ray Train workers; the caller's torch threads stand after."""
    directory = supernet_dir(config)
    threads = torch.get_num_threads()
    if config.supernet.threads is not None:
        torch.set_num_threads(config.supernet.threads)
    try:
        if config.supernet.workers <= 1:
            return train_supernet(
                supernet,
                task.data.train,
                ensemble_budget(config),
                seed=config.seed,
                checkpoint_dir=directory / "checkpoints",
                identity=identity(config),
                on_step=monitor.on_step,
                on_checkpoint=monitor.on_checkpoint,
                accelerator=trial_accelerator(config.resources),
            )
        from adacomp.platform.supernet_training.ray_training import train_on_ray

        monitor.say(f"training on {config.supernet.workers} Ray Train workers")
        began = time.perf_counter()
        steps = train_on_ray(
            json.loads(config.model_dump_json()),
            {k: v.detach().clone() for k, v in model.state_dict().items()},
            directory,
            identity(config),
            config.supernet.workers,
            config.resources,
        )
        for step in steps:
            monitor.on_step(StepLog(**step))
        resumed_from = steps[0]["step"] - 1 if steps else config.supernet.steps
        return EnsembleReport(config.supernet.steps, resumed_from, time.perf_counter() - began)
    finally:
        torch.set_num_threads(threads)
