"""Fine-tuning on CUDA (`pytest -m gpu`): a trial trains on the GPU, exports and measures on the CPU.

Skipped, with its reason, wherever torch sees no CUDA device.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from adacomp.device_farm import Farm, FarmConfig, MeasureSettings
from adacomp.device_farm.config import EmulatedSpec
from adacomp.platform.evaluate.trial import TrialContext, evaluate_plan, trial_accelerator
from adacomp.platform.search_config import Resources, SearchConfig
from adacomp.search_spaces import CompressionPlan, Step
from adacomp.search_spaces.supernet import EnsembleBudget, Supernet, load_checkpoint, train_supernet
from adacomp.tasks import TrainBudget, evaluate, load_task, pretrained_model, train
from adacomp.tasks.accelerator import Accelerator

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="no CUDA device: torch.cuda.is_available() is False"
    ),
]


@pytest.mark.parametrize("dtype", [None, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
def test_train_on_cuda_under_each_precision(dtype: torch.dtype | None) -> None:
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3)).cuda()
    x = torch.randn(256, 8)
    data = TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long())
    accelerator = Accelerator(device=torch.device("cuda", 0), dtype=dtype, pin_memory=True)
    report = train(model, data, TrainBudget(steps=60, batch_size=32, lr=1e-2), accelerator=accelerator)
    assert math.isfinite(report.final_loss)
    assert 0.5 < evaluate(model, data) <= 1.0  # learnt something, scored on the GPU


def test_a_trial_fine_tunes_on_the_gpu_and_ends_on_the_cpu(tmp_path_factory: pytest.TempPathFactory) -> None:
    task = replace(
        load_task("digits"), train_budget=TrainBudget(steps=60), finetune_budget=TrainBudget(steps=8)
    )
    config = SearchConfig.model_validate(
        {
            "name": "g",
            "task": "digits",
            "targets": ["pixel4"],
            "objectives": [{"metric": "accuracy"}],
            "finetune": {"steps": 8, "distill": True},
            "fidelity": {"rungs": 1},
            "resources": {"gpu": 1},
        }
    )
    farm = Farm(
        FarmConfig(
            devices=(EmulatedSpec(name="pixel4", kind="emulated", profile="pixel4", device_class="pixel4"),)
        )
    )
    model = pretrained_model(task, cache_dir=tmp_path_factory.mktemp("cache"))
    ctx = TrialContext(
        config, task, model, farm, MeasureSettings(), task.calibration_batches(2, 16), {"accuracy": 0.9}
    )
    ctx.accelerator = trial_accelerator(config.resources)
    assert ctx.accelerator.cuda
    plan = CompressionPlan.from_mapping({"fc1": [Step.of("low_rank", rank_fraction=0.5)]})
    result = evaluate_plan(ctx, plan, seed=1)
    assert not result.failed, result.reason  # ONNX export and int8 calibration ran on the CPU
    accuracy = result.metrics["accuracy"]
    assert accuracy is not None and math.isfinite(accuracy) and 0 <= accuracy <= 1
    assert result.metrics["finetune_steps"] == 8.0
    assert all(p.device.type == "cpu" for p in ctx.model.parameters())  # the teacher was a copy


def test_supernet_trains_on_the_gpu_checkpoints_and_ends_on_the_cpu(tmp_path: Path) -> None:
    from tests.helpers.small_models import SmallCNN

    torch.manual_seed(0)
    x, y = torch.randn(96, 1, 8, 8), torch.randint(0, 10, (96,))
    supernet = Supernet.build(SmallCNN().eval(), x[:2])
    accelerator = trial_accelerator(Resources(gpu=1))
    seen: list[str] = []
    report = train_supernet(
        supernet,
        TensorDataset(x, y),
        EnsembleBudget(steps=4, batch_size=16, checkpoint_every=2),
        checkpoint_dir=tmp_path,
        on_checkpoint=lambda step: seen.append(next(supernet.parameters()).device.type),
        accelerator=accelerator,
    )
    assert report.steps == 4 and seen == ["cuda", "cuda"]
    assert all(p.device.type == "cpu" for p in supernet.parameters())
    found = load_checkpoint(tmp_path)  # CPU tensors: it loads on a machine without a GPU
    assert found is not None and all(t.device.type == "cpu" for t in found[0].values())
    resumed = Supernet.build(SmallCNN().eval(), x[:2])
    budget = EnsembleBudget(steps=5, batch_size=16, checkpoint_every=2)
    assert train_supernet(resumed, TensorDataset(x, y), budget, checkpoint_dir=tmp_path).resumed_from == 4
