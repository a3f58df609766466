"""Ensemble training on Ray Train workers (`supernet.workers` > 1): data parallel on CPUs, or on
GPUs with `resources.gpu`.

TorchTrainer starts the workers and their process group (gloo; NCCL on GPUs); each builds the same supernet
from the same trained weights (shipped in the train loop config through Ray's object store)
and runs `train_supernet` with its rank, so batches, sampled configurations, checkpoints and
resumption are those of the single-process path. Rank 0 writes the checkpoints into the
supernet directory (a path every worker sees: this machine, or shared storage on a cluster) and
a step log the driver logs to MLflow afterwards.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from adacomp.errors import AdacompError
from adacomp.platform.search_config import Resources

STEP_LOG = "steps.jsonl"


def _per_worker(resources: Resources) -> dict[str, float]:
    """Ray Train's request per worker: CPUs, and GPUs only when asked for."""
    request = {"CPU": resources.cpu}
    if resources.gpu > 0:
        request["GPU"] = resources.gpu
    return request


def _train_loop(loop_config: dict[str, Any]) -> None:
    """Runs in every Ray Train worker."""
    import ray.train
    from ray.train.torch import get_device

    from adacomp.platform.evaluate.trial import trial_accelerator
    from adacomp.platform.search_config import SearchConfig
    from adacomp.platform.supernet_training.options import ensemble_budget, supernet_options
    from adacomp.search_spaces.supernet import StepLog, Supernet, train_supernet
    from adacomp.tasks import load_task
    from adacomp.tasks.accelerator import CPU

    config = SearchConfig.model_validate(loop_config["config"])
    # resources.cpu cores per worker (default 1): the workers are the parallelism
    torch.set_num_threads(max(1, int(config.resources.cpu)))
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    accelerator = CPU
    if config.resources.gpu > 0:  # the device Ray Train gave this worker (not always cuda:0 here)
        accelerator = replace(trial_accelerator(config.resources, ray.get_gpu_ids()), device=get_device())
    task = load_task(config.task)
    model = task.build_model()
    model.load_state_dict(loop_config["weights"])
    supernet = Supernet.build(model.eval(), task.example_input(2), supernet_options(config))
    directory = Path(loop_config["directory"])
    log = directory / STEP_LOG

    def on_step(entry: StepLog) -> None:
        with log.open("a") as f:
            f.write(json.dumps(entry.__dict__) + "\n")

    train_supernet(
        supernet,
        task.data.train,
        ensemble_budget(config),
        seed=config.seed,
        checkpoint_dir=directory / "checkpoints",
        identity=loop_config["identity"],
        on_step=on_step if rank == 0 else None,
        rank=rank,
        world_size=world,
        accelerator=accelerator,
    )
    ray.train.report({"done": 1.0})


def train_on_ray(
    config_json: dict[str, Any],
    weights: dict[str, torch.Tensor],
    directory: Path,
    identity: dict[str, Any],
    workers: int,
    resources: Resources | None = None,
    address: str | None = None,
) -> list[dict[str, Any]]:
    """Trains on `workers` Ray Train workers, each with `resources.cpu` CPUs and `resources.gpu`
    GPUs (whole ones: NCCL cannot put two ranks on one GPU); returns the step log (rank 0's)."""
    resources = resources or Resources()
    if 0 < resources.gpu < 1:
        raise AdacompError(
            f"resources.gpu: {resources.gpu:g} per worker; supernet training on {workers} GPU workers "
            "takes whole GPUs (NCCL cannot put two ranks on one GPU): set it to 1 or more"
        )
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    started = not ray.is_initialized()
    if started:
        # A cluster only when one is named: Ray alone would join whatever `ray start` left here.
        address = address or os.environ.get("RAY_ADDRESS") or "local"
        if address == "local":
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        else:
            from adacomp.platform.cluster import join

            join(address)  # the token, and one line when the cluster cannot be joined
    log = directory / STEP_LOG
    log.unlink(missing_ok=True)
    try:
        trainer = TorchTrainer(
            _train_loop,
            train_loop_config={
                "config": config_json,
                "weights": weights,
                "directory": str(directory),
                "identity": identity,
            },
            scaling_config=ScalingConfig(
                num_workers=workers, use_gpu=resources.gpu > 0, resources_per_worker=_per_worker(resources)
            ),
            run_config=RunConfig(name="supernet-train", storage_path=str(directory / "ray")),
        )
        trainer.fit()
    finally:
        if started:
            ray.shutdown()
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
