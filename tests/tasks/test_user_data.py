"""A user's own data: image folders and .npz arrays, on small files generated here."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adacomp.tasks import TaskError, load_image_folder, load_numpy_arrays, split_dataset


def _write_folder(root: Path, sizes: dict[str, list[tuple[int, int]]]) -> None:
    rng = np.random.default_rng(0)
    for name, shapes in sizes.items():
        (root / name).mkdir(parents=True)
        for i, (height, width) in enumerate(shapes):
            pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_image_folder_labels_by_sorted_class_folder(tmp_path: Path) -> None:
    _write_folder(tmp_path, {"dog": [(6, 5)] * 3, "cat": [(6, 5)] * 2})
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    data = load_image_folder(tmp_path)
    assert data.class_names == ("cat", "dog")
    assert data.inputs.shape == (5, 3, 6, 5)
    assert data.labels.tolist() == [0, 0, 1, 1, 1]
    assert float(data.inputs.min()) >= 0.0 and float(data.inputs.max()) <= 1.0
    expected = np.asarray(Image.open(tmp_path / "dog" / "0.png"), dtype=np.float32) / 255.0
    np.testing.assert_allclose(data.inputs[2].numpy().transpose(1, 2, 0), expected)


def test_image_folder_resizes_and_converts_to_grayscale(tmp_path: Path) -> None:
    _write_folder(tmp_path, {"a": [(6, 5), (9, 9)], "b": [(4, 4)]})
    data = load_image_folder(tmp_path, size=(8, 7), grayscale=True)
    assert data.inputs.shape == (3, 1, 8, 7)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "does not exist"),
        ("empty", "has no images in class folders"),
        ("corrupt", "cannot be read"),
        ("mixed", re.escape("is 5x4 (height x width)")),
    ],
)
def test_bad_image_folders_are_one_line_naming_the_file(tmp_path: Path, setup: str, message: str) -> None:
    root = tmp_path / "data"
    if setup == "empty":
        (root / "cat").mkdir(parents=True)
    elif setup == "corrupt":
        _write_folder(root, {"cat": [(4, 4)]})
        (root / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    elif setup == "mixed":
        _write_folder(root, {"cat": [(4, 4), (5, 4)]})
    with pytest.raises(TaskError, match=message) as error:
        load_image_folder(root)
    text = str(error.value)
    assert "\n" not in text and str(root) in text
    if setup == "corrupt":
        assert "broken.png" in text


def test_numpy_arrays_round_trip(tmp_path: Path) -> None:
    inputs = np.random.default_rng(0).normal(size=(12, 2, 5)).astype(np.float64)
    labels = np.arange(12) % 3
    np.savez(tmp_path / "data.npz", x=inputs, y=labels)
    data = load_numpy_arrays(tmp_path / "data.npz")
    assert data.inputs.dtype.is_floating_point and data.inputs.shape == (12, 2, 5)
    np.testing.assert_allclose(data.inputs.numpy(), inputs.astype(np.float32))
    assert data.labels.tolist() == labels.tolist()
    train, val, test = split_dataset(data, (0.5, 0.25, 0.25))
    assert (len(train), len(val), len(test)) == (6, 3, 3)
    assert sorted(int(train[i][1]) for i in range(6)) == [0, 0, 1, 1, 2, 2]  # class-balanced


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"garbage", "not a readable .npz"),
        ({"features": np.zeros((2, 2)), "labels": np.zeros(2, dtype=int)}, "expected 'inputs'"),
        ({"inputs": np.zeros((3, 2)), "labels": np.zeros(2, dtype=int)}, "3 inputs but 2 labels"),
        ({"inputs": np.zeros((2, 2)), "labels": np.array([0.5, 1.0])}, "expected integers >= 0"),
        ({"inputs": np.full((2, 2), np.nan), "labels": np.zeros(2, dtype=int)}, "NaN or infinite"),
        ({"inputs": np.array([["a", "b"]]), "labels": np.zeros(1, dtype=int)}, "expected numbers"),
        ("single", "holds one array"),
    ],
)
def test_bad_arrays_files_are_one_line_naming_the_file(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "data.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, dict):
        np.savez(path, **content)
    elif content == "single":
        path = tmp_path / "data.npy"
        np.save(path, np.zeros(3))
    with pytest.raises(TaskError, match=message) as error:
        load_numpy_arrays(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)
