"""Ensemble training on two Ray Train workers (real Ray, gloo process group, on this machine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adacomp.platform.search_config import SearchConfig
from adacomp.platform.supernet_training.training import build_supernet, train_supernet_job
from adacomp.search_spaces.supernet import average_gradients

pytestmark = pytest.mark.slow


def test_two_workers_resume_train_and_checkpoint(tmp_path: Path, shared_ray: str) -> None:
    data = {
        "name": "dp",
        "task": "tests.platform.tiny_task:tiny_digits",
        "targets": ["pixel4"],
        "objectives": [{"metric": "accuracy"}],
        "output": {"dir": str(tmp_path)},
        "supernet": {"steps": 2, "checkpoint_every": 2, "batch_size": 32},
    }
    first = train_supernet_job(SearchConfig.model_validate(data))  # 2 steps in this process
    before = {k: v.clone() for k, v in load_file(str(first.directory / "supernet.safetensors")).items()}
    data["supernet"] = {"steps": 4, "checkpoint_every": 2, "batch_size": 32, "workers": 2}
    config = SearchConfig.model_validate(data)
    trained = train_supernet_job(config, resume=True)  # the workers go on from step 2
    assert trained.steps == 4 and trained.resumed_from == 2 and trained.run_id == first.run_id
    steps = [
        json.loads(line)["step"] for line in (trained.directory / "steps.jsonl").read_text().splitlines()
    ]
    assert steps == [3, 4]  # rank 0's log only: one line per step
    assert (trained.directory / "checkpoints" / "LATEST").read_text() == "step-0000004"
    _, _, supernet = build_supernet(config)
    weights = load_file(str(trained.directory / "supernet.safetensors"))
    assert set(weights) == set(supernet.state_dict())
    assert any(not torch.equal(weights[k], v) for k, v in before.items())  # the workers trained it


def test_average_gradients_is_the_mean_over_ranks_and_keeps_unused_ones_none() -> None:
    import torch.distributed as dist

    store = dist.HashStore()
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        layer = torch.nn.Linear(3, 2)
        layer.weight.grad = torch.ones(2, 3)
        average_gradients(layer)
        assert torch.equal(layer.weight.grad, torch.ones(2, 3)) and layer.bias.grad is None
    finally:
        dist.destroy_process_group()
