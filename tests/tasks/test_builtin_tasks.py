from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from adacomp.tasks import Task, TaskError, load_task
from adacomp.tasks.digits import digits_arrays, digits_task
from adacomp.tasks.mnist1d import _generate, _make_dataset, mnist1d_task
from adacomp.tasks.mobile import InvertedResidual, MobileNetV2, make_divisible

BUILTINS = ["digits", "mnist1d", "mobilenet_digits", "shapes_resnet"]


def _labels(dataset: object) -> torch.Tensor:
    return torch.stack([dataset[i][1] for i in range(len(dataset))])  # type: ignore[index, arg-type]


def _sizes(task: Task) -> list[int]:
    return [len(s) for s in (task.data.train, task.data.val, task.data.test)]  # type: ignore[arg-type]


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_tasks_have_consistent_shapes(name: str) -> None:
    task = load_task(name)
    assert task.name == name
    x, y = task.data.test[0]
    assert tuple(x.shape) == task.input_shape and x.dtype == torch.float32 and y.dtype == torch.int64
    torch.manual_seed(0)
    model = task.build_model().eval()
    with torch.no_grad():
        assert model(task.example_input(2)).shape == (2, task.num_classes)
    assert set(_labels(task.data.test).tolist()) == set(range(task.num_classes))
    assert task.finetune_budget.num_steps(1000) < task.train_budget.num_steps(1000)


def test_digits_splits_are_stratified_disjoint_and_deterministic() -> None:
    task = load_task("digits")
    assert _sizes(task) == [1078, 359, 360]
    _, _, (train, val, test) = digits_arrays()
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    digits_arrays.cache_clear()
    again = digits_task()
    for a, b in zip((task.data.train, task.data.test), (again.data.train, again.data.test), strict=True):
        assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)  # type: ignore[attr-defined]
    for split in (task.data.train, task.data.val, task.data.test):
        counts = torch.bincount(_labels(split), minlength=10).float()
        assert counts.min() / counts.max() > 0.8
    inputs = task.data.train.inputs  # type: ignore[attr-defined]
    assert float(inputs.min()) >= 0.0 and float(inputs.max()) <= 1.0


def test_mnist1d_is_generated_deterministically_without_touching_global_rngs() -> None:
    task = load_task("mnist1d")
    assert _sizes(task) == [2560, 640, 800]
    train, val = task.data.train.inputs, task.data.val.inputs  # type: ignore[attr-defined]
    train_rows = {row.tobytes() for row in train.numpy()}
    assert not any(row.tobytes() in train_rows for row in val.numpy())
    _generate.cache_clear()
    random.seed(7)
    np.random.seed(7)
    expected = (random.random(), np.random.rand())
    random.seed(7)
    np.random.seed(7)
    generated = _make_dataset()  # the generator itself, not the kept copy: about 2 s
    again = mnist1d_task()  # read back from the cache folder
    assert (random.random(), np.random.rand()) == expected
    assert torch.equal(task.data.test.inputs, again.data.test.inputs)  # type: ignore[attr-defined]
    assert torch.equal(task.data.val.labels, again.data.val.labels)  # type: ignore[attr-defined]
    assert np.array_equal(generated["x_test"], again.data.test.inputs.squeeze(1).numpy())  # type: ignore[attr-defined]
    assert np.array_equal(generated["y_test"], again.data.test.labels.numpy())  # type: ignore[attr-defined]


def test_layer_names_are_readable() -> None:
    names = dict(load_task("digits").build_model().named_modules())
    assert {"features.conv1", "features.bn1", "features.relu1", "features.conv3", "fc1", "fc2"} <= set(names)
    names = dict(load_task("mnist1d").build_model().named_modules())
    assert isinstance(names["features.conv2"], nn.Conv1d) and isinstance(names["fc1"], nn.Linear)


def test_mobilenet_is_mobile_sized_with_inverted_residuals() -> None:
    model = MobileNetV2().eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 96, 96))
    macs = counter.get_total_flops() / 2
    assert 5e6 < macs < 50e6  # about 17.6 M at width 0.5
    blocks = [m for m in model.modules() if isinstance(m, InvertedResidual)]
    assert len(blocks) == 17 and sum(b.use_residual for b in blocks) == 10
    depthwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 17 and all(m.groups == m.in_channels for m in depthwise)
    assert isinstance(model.classifier, nn.Linear) and model.classifier.in_features == 1280
    assert make_divisible(16 * 0.5) == 8 and make_divisible(24 * 0.5) == 16
    with pytest.raises(TaskError, match="width_mult=0"):
        MobileNetV2(width_mult=0)


def test_mobile_data_is_upscaled_lazily_from_the_digits_split() -> None:
    mobile, digits = load_task("mobilenet_digits"), load_task("digits")
    assert _sizes(mobile) == _sizes(digits)
    image, label = mobile.data.test[5]
    small, small_label = digits.data.test[5]
    assert image.shape == (3, 96, 96) and torch.equal(label, small_label)
    assert torch.equal(image[0], image[2]) and 0.0 <= float(image.min()) <= float(image.max()) <= 1.0
    assert torch.allclose(image.mean(), small.mean(), atol=0.05)
