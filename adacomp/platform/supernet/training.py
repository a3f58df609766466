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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from mlflow.entities import Metric, Param
from safetensors.torch import load_file
from torch import nn

from adacomp.errors import AdacompError
from adacomp.platform.search_config import SearchConfig, as_search_config, silent
from adacomp.platform.supernet.options import ensemble_budget, supernet_options
from adacomp.search_spaces.supernet import (
    EnsembleReport,
    StepLog,
    SubnetConfig,
    Supernet,
    load_checkpoint,
    recalibrate_batchnorm,
    train_supernet,
)
from adacomp.tasks import Task, evaluate, load_task, pretrained_model

WEIGHTS_FILE = "supernet.safetensors"
LOG_EVERY = 10  # steps between loss points in MLflow


def supernet_dir(config: SearchConfig) -> Path:
    return (config.output.dir / config.name / "supernet").resolve()


def identity(config: SearchConfig) -> dict[str, Any]:
    """What the weights depend on: a checkpoint from other settings is refused, not mixed in."""
    s = config.supernet
    return {
        "task": config.task,
        "seed": config.seed,
        "options": {"width": list(s.width), "rank": list(s.rank), "depth": s.depth},
    }


def build_supernet(config: SearchConfig) -> tuple[Task, nn.Module, Supernet]:
    """The task, its trained uncompressed model, and a fresh supernet built from it."""
    task = load_task(config.task)
    model = pretrained_model(task, seed=config.seed)
    return task, model, Supernet.build(model, task.example_input(2), supernet_options(config))


def bn_batches(task: Task, config: SearchConfig) -> list[torch.Tensor]:
    """Fixed training batches that re-estimate BatchNorm statistics of an extracted model."""
    return [torch.from_numpy(b) for b in task.calibration_batches(config.supernet.bn_batches, 64)]


def extract_ready(supernet: Supernet, config: SubnetConfig, batches: list[torch.Tensor]) -> nn.Module:
    """A static model of `config` with its own BatchNorm statistics: what gets evaluated and shipped."""
    return recalibrate_batchnorm(supernet.extract(config), batches)


def load_trained_supernet(config: SearchConfig) -> tuple[Task, nn.Module, Supernet]:
    path = supernet_dir(config) / WEIGHTS_FILE
    if not path.is_file():
        raise AdacompError(
            f"no trained supernet for {config.name!r} ({path} is missing); run `adacomp supernet train` first"
        )
    task, model, supernet = build_supernet(config)
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
    config: SearchConfig | str | Path, *, resume: bool = False, log: Callable[[str], None] | None = None
) -> TrainResult:
    """Trains (or resumes training of) the supernet of `config`; see the module docstring."""
    from adacomp.platform.results.job_dir import JobDir
    from adacomp.platform.results.tracking import SearchTracker

    say = log or silent
    config = as_search_config(config)
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
    say(supernet.layout.report())
    say(f"{supernet.space.size:,} configurations share these weights")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "layout.json").write_text(json.dumps(supernet.describe(), indent=2) + "\n")

    tracker = SearchTracker.for_config(config, state.get("tracking_uri"))
    tracking_uri = tracker.tracking_uri
    client = tracker.client
    run_id = state.get("run_id")
    if run_id is None:
        run = client.create_run(
            tracker.experiment_id,
            run_name=f"{config.name}-supernet",
            tags={
                "adacomp.kind": "supernet-train",
                "adacomp.search": config.name,
                "adacomp.dir": str(directory),
            },
        )
        run_id = run.info.run_id
        params = {f"supernet.{k}": v for k, v in config.supernet.model_dump().items()}
        params.update(task=config.task, seed=config.seed, configurations=supernet.space.size)
        client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
        client.log_artifact(run_id, str(directory / "layout.json"))
        state = {"run_id": run_id, "tracking_uri": tracking_uri, "identity": identity(config)}
        job.save(state)
    else:
        client.update_run(run_id, status="RUNNING")
    batches = bn_batches(task, config)
    pending: list[Metric] = []

    def on_step(entry: StepLog) -> None:
        if entry.step % LOG_EVERY == 0 or entry.step == config.supernet.steps:
            now = int(time.time() * 1000)
            pending.extend(
                [
                    Metric("loss_largest", entry.largest_loss, now, entry.step),
                    Metric("loss_smallest", entry.smallest_loss, now, entry.step),
                ]
            )
            say(
                f"step {entry.step}/{config.supernet.steps}: loss largest {entry.largest_loss:.4f}, "
                f"smallest {entry.smallest_loss:.4f}"
            )

    checked: dict[int, dict[str, float]] = {}

    def on_checkpoint(step: int) -> None:
        accuracy = checked[step] = _accuracies(task, supernet, batches)
        supernet.train()
        now = int(time.time() * 1000)
        pending.extend(Metric(f"val_accuracy_{k}", v, now, step) for k, v in accuracy.items())
        client.log_batch(run_id, metrics=list(pending))
        pending.clear()
        say(
            f"checkpoint at step {step}: validation accuracy largest {accuracy['largest']:.4f}, "
            f"smallest {accuracy['smallest']:.4f}"
        )

    workers = config.supernet.workers
    threads = torch.get_num_threads()
    if config.supernet.threads is not None:
        torch.set_num_threads(config.supernet.threads)  # restored below: the caller's setting stands
    try:
        if workers > 1:
            from adacomp.platform.supernet.ray_training import train_on_ray

            say(f"training on {workers} Ray Train workers")
            began = time.perf_counter()
            steps = train_on_ray(
                json.loads(config.model_dump_json()),
                {k: v.detach().clone() for k, v in model.state_dict().items()},
                directory,
                identity(config),
                workers,
            )
            for step in steps:
                on_step(StepLog(**step))
            resumed_from = steps[0]["step"] - 1 if steps else config.supernet.steps
            report = EnsembleReport(config.supernet.steps, resumed_from, time.perf_counter() - began)
        else:
            report = train_supernet(
                supernet,
                task.data.train,
                ensemble_budget(config),
                seed=config.seed,
                checkpoint_dir=directory / "checkpoints",
                identity=identity(config),
                on_step=on_step,
                on_checkpoint=on_checkpoint,
            )
    except BaseException:
        if pending:
            client.log_batch(run_id, metrics=pending)
        client.set_terminated(run_id, status="KILLED")
        raise
    finally:
        torch.set_num_threads(threads)
    if pending:
        client.log_batch(run_id, metrics=list(pending))
        pending.clear()
    found = load_checkpoint(directory / "checkpoints")
    assert found is not None
    if workers > 1:
        supernet.load_state_dict(found[0])  # the workers trained their own copies
    shutil.copyfile(found[2] / WEIGHTS_FILE, directory / WEIGHTS_FILE)
    # The last checkpoint (always the final step) already scored these weights.
    accuracy = checked.get(report.steps) or _accuracies(task, supernet, batches)
    client.log_batch(
        run_id,
        metrics=[
            Metric(f"final_val_accuracy_{k}", v, int(time.time() * 1000), report.steps)
            for k, v in accuracy.items()
        ],
    )
    client.log_artifact(run_id, str(directory / WEIGHTS_FILE))
    client.set_terminated(run_id, status="FINISHED")
    return TrainResult(
        directory=directory,
        run_id=run_id,
        tracking_uri=tracking_uri,
        steps=report.steps,
        resumed_from=report.resumed_from,
        seconds=report.seconds,
        accuracy=accuracy,
        layout=supernet.layout.report(),
    )
