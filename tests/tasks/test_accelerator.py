"""Where training runs and at which precision: pure choices, and the CPU path left as it was."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from adacomp.platform.evaluate.trial import trial_accelerator
from adacomp.platform.search_config import Resources
from adacomp.tasks import TaskError, TrainBudget, train
from adacomp.tasks.accelerator import CPU, Accelerator, autocast_dtype, choose_accelerator, pick_device

CUDA = torch.device("cuda", 0)


@pytest.mark.parametrize(
    ("gpu", "gpu_ids", "cuda_available", "expected"),
    [
        (0.0, None, True, "cpu"),  # no GPU asked for: the CPU, whatever the machine has
        (0.0, [0], True, "cpu"),
        (0.5, [], True, "cpu"),  # a Ray worker that was given no GPU
        (0.5, None, False, "cpu"),  # outside Ray on a machine without CUDA
        (0.5, [3], True, "cuda:0"),  # Ray's CUDA_VISIBLE_DEVICES=3: the assigned GPU is cuda:0
        (2.0, ["1", "2"], True, "cuda:0"),
        (1.0, None, True, "cuda:0"),  # outside Ray (the driver's polish): the machine's first GPU
    ],
)
def test_the_device_is_the_assigned_gpu_or_the_cpu(
    gpu: float, gpu_ids: list[object] | None, cuda_available: bool, expected: str
) -> None:
    assert pick_device(gpu, gpu_ids, cuda_available) == torch.device(expected)


def test_a_gpu_ray_assigned_that_torch_cannot_see_is_refused() -> None:
    with pytest.raises(TaskError, match=r"^resources\.gpu: Ray assigned GPU 0 but torch sees no CUDA"):
        pick_device(1.0, [0], cuda_available=False)


@pytest.mark.parametrize(
    ("mode", "device", "bf16", "expected"),
    [
        ("auto", torch.device("cpu"), True, None),  # never on the CPU
        ("on", torch.device("cpu"), True, None),
        ("off", CUDA, True, None),
        ("auto", CUDA, True, torch.bfloat16),
        ("on", CUDA, True, torch.bfloat16),
        ("auto", CUDA, False, torch.float16),  # pre-Ampere: fp16, with a gradient scaler
        ("on", CUDA, False, torch.float16),
    ],
)
def test_the_autocast_dtype(
    mode: str, device: torch.device, bf16: bool, expected: torch.dtype | None
) -> None:
    assert autocast_dtype(mode, device, bf16) == expected  # type: ignore[arg-type]


def test_without_cuda_every_choice_is_the_cpu_path() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert choose_accelerator(1.0, "on") == CPU
    assert trial_accelerator(Resources(gpu=0.5, loader_workers=2)) == Accelerator(loader_workers=2)
    assert trial_accelerator(Resources()) == CPU


def test_with_cuda_and_ray_gpu_ids_the_trial_takes_cuda_0(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    chosen = trial_accelerator(Resources(gpu=0.25, loader_workers=2), gpu_ids=[5])
    assert chosen == Accelerator(device=CUDA, dtype=torch.float16, pin_memory=True, loader_workers=2)
    assert chosen.cuda and chosen.scales_gradients
    off = trial_accelerator(Resources(gpu=1, mixed_precision="off", pin_memory=False), gpu_ids=[0])
    assert off == Accelerator(device=CUDA)
    assert trial_accelerator(Resources(gpu=0.25), gpu_ids=[]) == CPU  # Ray gave this worker none


def _tiny() -> tuple[nn.Module, TensorDataset]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3))
    data = TensorDataset(torch.randn(96, 8), torch.randint(0, 3, (96,)))
    return model, data


def test_a_cuda_accelerator_changes_nothing_for_a_model_on_the_cpu() -> None:
    """Autocast, scaling and pinning follow the model's device: on the CPU the loop is the old one,
    to the bit (the same seeds, the same weights)."""
    budget = TrainBudget(steps=12, batch_size=16, lr=1e-2)
    plain, data = _tiny()
    asked, _ = _tiny()
    first = train(plain, data, budget, seed=3)
    second = train(asked, data, budget, seed=3, accelerator=Accelerator(dtype=torch.float16, pin_memory=True))
    assert first.final_loss == second.final_loss
    for a, b in zip(plain.state_dict().values(), asked.state_dict().values(), strict=True):
        assert torch.equal(a, b)
