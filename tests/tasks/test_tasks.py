from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from adacomp.errors import AdacompError
from adacomp.search_spaces import export_onnx
from adacomp.tasks import (
    Task,
    TaskError,
    TrainBudget,
    TrainingDiverged,
    builtin_task_names,
    evaluate,
    evaluate_onnx,
    load_task,
    load_weights,
    pretrained_model,
    train,
)
from adacomp.tasks.mobile import MobileNetV2


def _labels(dataset: object) -> torch.Tensor:
    return torch.stack([dataset[i][1] for i in range(len(dataset))])  # type: ignore[index, arg-type]


@pytest.mark.parametrize("name", ["digits", "mnist1d", "mobilenet_digits"])
def test_builtin_tasks_have_consistent_shapes(name: str) -> None:
    task = load_task(name)
    x, y = task.data.train[0]
    assert tuple(x.shape) == task.input_shape and y.dtype == torch.int64
    model = task.build_model().eval()
    assert model(task.example_input(2)).shape == (2, task.num_classes)
    assert set(_labels(task.data.test).tolist()) == set(range(task.num_classes))


def test_digits_splits_are_disjoint_and_deterministic() -> None:
    task = load_task("digits")
    sizes = [len(task.data.train), len(task.data.val), len(task.data.test)]  # type: ignore[arg-type]
    assert sum(sizes) == 1797
    from adacomp.tasks.digits import digits_arrays

    _, _, (train_idx, val_idx, test_idx) = digits_arrays()
    assert not set(train_idx) & set(test_idx) and not set(val_idx) & set(test_idx)
    assert not set(train_idx) & set(val_idx)
    again = load_task("digits")
    assert torch.equal(_labels(task.data.test), _labels(again.data.test))
    # stratified: every class appears in every split in about the same share
    for split in (task.data.train, task.data.val, task.data.test):
        counts = torch.bincount(_labels(split), minlength=10).float()
        assert counts.min() / counts.max() > 0.8
    assert task.example_input(3).equal(load_task("digits").example_input(3))
    assert np.array_equal(task.calibration_batches()[0], task.calibration_batches()[0])


def test_training_reduces_the_loss_and_is_seeded() -> None:
    task = load_task("digits")
    budget = TrainBudget(steps=40, batch_size=64, lr=3e-3)
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = task.build_model()
        report = train(model, task.data.train, budget, seed=1)
        results.append((report.final_loss, evaluate(model, task.data.val)))
    assert results[0] == results[1]
    assert results[0][0] < 1.0  # from ln(10) = 2.3
    assert results[0][1] > 0.6


def test_distillation_trains() -> None:
    task = load_task("digits")
    torch.manual_seed(0)
    teacher, student = task.build_model(), task.build_model()
    report = train(student, task.data.train, TrainBudget(steps=5), teacher=teacher)
    assert report.steps == 5


def test_nan_loss_raises_training_diverged() -> None:
    task = load_task("digits")

    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.flatten(1)) * float("nan")

    with pytest.raises(TrainingDiverged, match="step 1"):
        train(Broken(), task.data.train, TrainBudget(steps=3))


def test_onnx_accuracy_matches_torch() -> None:
    task = load_task("digits")
    torch.manual_seed(0)
    model = task.build_model()
    train(model, task.data.train, TrainBudget(steps=20))
    onnx_model = export_onnx(model, task.example_input(2))
    assert evaluate_onnx(onnx_model, task.data.test) == pytest.approx(
        evaluate(model, task.data.test), abs=0.003
    )


def test_mobile_model_is_mobile_sized() -> None:
    from adacomp.search_spaces.facts import count_macs

    model = MobileNetV2()
    macs = count_macs(model, torch.zeros(1, 3, 96, 96))
    assert 5e6 < macs < 100e6


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "unknown task 'nope'; built-in tasks: digits, mnist1d, mobilenet_digits"),
        ("not_a_module_xyz:f", "cannot import module 'not_a_module_xyz'"),
        ("tests.platform.tiny_task:missing", "has no function 'missing'"),
        ("tests.platform.tiny_task:not_a_task", "returned int; expected an adacomp.tasks.Task"),
    ],
)
def test_load_task_errors(spec: str, message: str) -> None:
    with pytest.raises(TaskError, match=message):
        load_task(spec)
    assert issubclass(TaskError, AdacompError)


def test_module_function_tasks_load() -> None:
    task = load_task("tests.platform.tiny_task:tiny_digits")
    assert isinstance(task, Task) and task.name == "tiny_digits"
    assert "digits" in builtin_task_names()


def test_pretrained_is_cached(tmp_path: Path) -> None:
    task = replace(load_task("digits"), train_budget=TrainBudget(steps=5))
    first = pretrained_model(task, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    second = pretrained_model(task, cache_dir=tmp_path)
    for (k, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    other_seed = pretrained_model(task, seed=1, cache_dir=tmp_path)
    assert not torch.equal(other_seed.state_dict()["fc2.weight"], first.state_dict()["fc2.weight"])


def test_load_weights_errors(tmp_path: Path) -> None:
    model = load_task("digits").build_model()
    with pytest.raises(TaskError, match="does not exist"):
        load_weights(model, tmp_path / "none.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(TaskError, match="not a readable safetensors"):
        load_weights(model, tmp_path / "junk.safetensors")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["fc2.weight"] = torch.zeros(3, 3)
    del state["fc1.bias"]
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(TaskError, match=r"missing fc1.bias; shape of fc2.weight: file \(3, 3\)"):
        load_weights(model, tmp_path / "bad.safetensors")


@pytest.mark.slow
def test_digits_trains_to_95_percent() -> None:
    task = load_task("digits")
    torch.manual_seed(0)
    model = task.build_model()
    train(model, task.data.train, task.train_budget)
    assert evaluate(model, task.data.test) >= 0.95


@pytest.mark.slow
def test_mnist1d_trains() -> None:
    task = load_task("mnist1d")
    torch.manual_seed(0)
    model = task.build_model()
    train(model, task.data.train, task.train_budget)
    assert evaluate(model, task.data.test) >= 0.8
