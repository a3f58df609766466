"""A user's own data for a task: an image folder or NumPy arrays, checked file by file.

Built-in tasks generate or ship their data; a user's task (`package.module:function`) loads
theirs with these and splits it with `split_dataset`. Every problem is a TaskError naming the
file and what was expected, raised before any training starts.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset

from adacomp.tasks._base import TaskError
from adacomp.tasks.datasets import TensorPairDataset, stratified_split

__all__ = ["IMAGE_SUFFIXES", "load_image_folder", "load_numpy_arrays", "split_dataset"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
_INPUT_KEYS = ("inputs", "x")
_LABEL_KEYS = ("labels", "y")


def load_image_folder(
    root: Path | str, *, size: tuple[int, int] | None = None, grayscale: bool = False
) -> TensorPairDataset:
    """Images under `root/<class name>/`, labelled by class folder in sorted order.

    Returns inputs (N, C, H, W) float32 in [0, 1] (C = 3, or 1 with `grayscale`) and int64
    labels; `class_names` on the result maps labels back. Without `size` every image must have
    the same size; with it, each is resized (bilinear) to (height, width).
    """
    from PIL import Image, UnidentifiedImageError

    folder = Path(root)
    if not folder.is_dir():
        raise TaskError(f"image folder {str(folder)!r} does not exist or is not a directory")
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise TaskError(f"size={size!r}; expected (height, width), both >= 1")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [
        (label, path)
        for label, name in enumerate(classes)
        for path in sorted((folder / name).iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise TaskError(
            f"image folder {str(folder)!r} has no images in class folders; expected "
            f"{folder}/<class>/<image> with one of {', '.join(sorted(IMAGE_SUFFIXES))}"
        )
    mode = "L" if grayscale else "RGB"
    arrays: list[np.ndarray] = []
    first: Path | None = None
    for _, path in files:
        try:
            with Image.open(path) as image:
                converted = image.convert(mode)
                if size is not None:
                    converted = converted.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                pixels = np.asarray(converted, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise TaskError(f"image {str(path)!r} cannot be read ({type(error).__name__}: {error})") from None
        if first is not None and pixels.shape != arrays[0].shape:
            raise TaskError(
                f"image {str(path)!r} is {_size(pixels)} but {str(first)!r} is {_size(arrays[0])}; "
                "pass size=(height, width) to resize them all"
            )
        first = first or path
        arrays.append(pixels)
    stacked = np.stack(arrays)
    inputs = stacked[:, None] if grayscale else stacked.transpose(0, 3, 1, 2)
    labels = np.array([label for label, _ in files], dtype=np.int64)
    pixels_tensor = torch.from_numpy(np.ascontiguousarray(inputs))
    return TensorPairDataset(pixels_tensor, torch.from_numpy(labels), classes)


def load_numpy_arrays(path: Path | str) -> TensorPairDataset:
    """An .npz file holding `inputs` (or `x`): (N, ...) numbers, and `labels` (or `y`): (N,)
    integers >= 0. Loaded without pickle: object arrays are refused."""
    file = Path(path)
    if not file.is_file():
        raise TaskError(f"arrays file {str(file)!r} does not exist")
    try:
        archive = np.load(file, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise TaskError(
            f"arrays file {str(file)!r} is not a readable .npz ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise TaskError(f"arrays file {str(file)!r} holds one array; expected an .npz with inputs and labels")
    with archive:
        names = set(archive.files)
        input_key = next((k for k in _INPUT_KEYS if k in names), None)
        label_key = next((k for k in _LABEL_KEYS if k in names), None)
        if input_key is None or label_key is None:
            raise TaskError(
                f"arrays file {str(file)!r} has arrays {sorted(names)}; expected 'inputs' (or 'x') "
                "and 'labels' (or 'y')"
            )
        try:
            inputs, labels = archive[input_key], archive[label_key]
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
            raise TaskError(
                f"arrays file {str(file)!r}: cannot read its arrays ({type(error).__name__}: {error})"
            ) from None
    if not np.issubdtype(inputs.dtype, np.number) or inputs.ndim < 2:
        raise TaskError(
            f"arrays file {str(file)!r}: {input_key} is {inputs.dtype} with shape {inputs.shape}; "
            "expected numbers shaped (N, ...) with one sample per row"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or (labels < 0).any():
        raise TaskError(
            f"arrays file {str(file)!r}: {label_key} is {labels.dtype} with shape {labels.shape}; "
            "expected integers >= 0 shaped (N,)"
        )
    if len(inputs) != len(labels):
        raise TaskError(f"arrays file {str(file)!r}: {len(inputs)} inputs but {len(labels)} labels")
    if not np.isfinite(inputs).all():
        raise TaskError(f"arrays file {str(file)!r}: {input_key} holds NaN or infinite values")
    return TensorPairDataset(
        torch.from_numpy(inputs.astype(np.float32)), torch.from_numpy(labels.astype(np.int64))
    )


def split_dataset(
    data: TensorPairDataset, fractions: Sequence[float] = (0.7, 0.15, 0.15), *, seed: int = 0
) -> list[Subset[tuple[torch.Tensor, torch.Tensor]]]:
    """Class-balanced splits (e.g. train/val/test) of `data`, the same for a given seed."""
    try:
        parts = stratified_split(data.labels.numpy(), tuple(fractions), seed=seed)
    except ValueError as error:
        raise TaskError(f"cannot split {len(data)} samples by {tuple(fractions)}: {error}") from None
    return [Subset(data, part.tolist()) for part in parts]


def _size(pixels: np.ndarray) -> str:
    return f"{pixels.shape[0]}x{pixels.shape[1]} (height x width)"
