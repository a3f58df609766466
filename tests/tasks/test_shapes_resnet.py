"""The CIFAR-size task: generated shapes, the ResNet, its augmentation (tiny budgets here; the
converged baseline is checked by benchmarks/baselines.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adacomp.search_spaces import export_onnx
from adacomp.tasks import load_task, predict_onnx
from adacomp.tasks.augment import RandomCrop
from adacomp.tasks.resnet import CROP_AND_FLIP, CifarResNet
from adacomp.tasks.shapes import CLASS_NAMES, render_shapes


def test_rendering_is_deterministic_balanced_and_in_range() -> None:
    images, labels = render_shapes(200, seed=3)
    again, again_labels = render_shapes(200, seed=3)
    assert images.shape == (200, 3, 32, 32) and images.dtype == np.float32
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, again_labels)
    assert np.bincount(labels).tolist() == [20] * len(CLASS_NAMES)
    assert images.min() >= 0.0 and images.max() <= 1.0
    other, _ = render_shapes(200, seed=4)
    assert not np.array_equal(images, other)


def test_classes_differ_in_what_the_images_show() -> None:
    """Per-class mean images differ: the label is in the pixels, not only in the noise."""
    images, labels = render_shapes(2000, seed=0)
    gray = images.mean(axis=1)
    centred = gray - gray.mean(axis=(1, 2), keepdims=True)
    energy = np.abs(np.fft.fft2(centred)).mean(axis=0)
    assert energy.shape == (32, 32)
    by_class = [np.abs(np.fft.fft2(centred[labels == c])).mean(axis=0) for c in range(len(CLASS_NAMES))]
    spread = np.std(np.stack(by_class), axis=0).mean()
    assert spread > 0.08 * energy.mean()  # 0.12 measured; 0.04 with the labels shuffled


def test_the_task_splits_are_disjoint_renderings() -> None:
    task = load_task("shapes_resnet")
    assert task.input_shape == (3, 32, 32) and task.num_classes == 10
    train, test = task.data.train, task.data.test
    assert not torch.equal(train[0][0], test[0][0])
    assert task.train_budget.schedule == "cosine" and task.augment == RandomCrop(padding=4, flip=True)


@pytest.mark.parametrize("blocks", [1, 3])
def test_resnet_depths_export_and_match_onnxruntime(blocks: int) -> None:
    torch.manual_seed(0)
    model = CifarResNet(blocks_per_stage=blocks).eval()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 1 + 3 * 2 * blocks + 2  # stem, two per block, two projection shortcuts
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(predict_onnx(export_onnx(model, x), x.numpy()), expected, atol=1e-4)


def test_random_crop_keeps_shape_is_seeded_and_only_moves_pixels() -> None:
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a = CROP_AND_FLIP(x, torch.Generator().manual_seed(5))
    b = CROP_AND_FLIP(x, torch.Generator().manual_seed(5))
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.equal(a, x)
    for i in range(16):  # each output pixel is an input pixel or zero padding
        values = set(x[i].flatten().tolist()) | {0.0}
        assert set(a[i].flatten().tolist()) <= values
