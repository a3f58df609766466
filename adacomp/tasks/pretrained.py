"""Trained baselines, cached as safetensors so that every job and trial reuses one training run.

The cache key covers the task name, the seed, the training budget and the model's parameter
names and shapes, so a changed model or budget never loads stale weights. Files are written
atomically (temp file + rename): a killed run never leaves a half-written cache entry.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from adacomp.atomic import atomic_path
from adacomp.tasks._base import Task, TaskError
from adacomp.tasks.cache_dir import default_cache_dir
from adacomp.tasks.training import train

__all__ = ["cache_key", "default_cache_dir", "load_weights", "pretrained_model"]


def cache_key(task: Task, model: nn.Module, seed: int) -> str:
    """File stem naming what the weights depend on: task, seed, budget, augmentation, architecture."""
    signature = repr(sorted((k, tuple(v.shape)) for k, v in model.state_dict().items()))
    budget = repr(sorted(asdict(task.train_budget).items()))
    if task.augment is not None:  # what the weights were trained on, too
        budget += (
            f"|augment={getattr(task.augment, '__module__', '')}.{getattr(task.augment, '__qualname__', '')}"
        )
    digest = hashlib.sha256(f"{signature}|{budget}".encode()).hexdigest()[:12]
    # A task from module:function may be named anything; keep the file name portable.
    safe_name = re.sub(r"[^A-Za-z0-9_.-]", "_", task.name)
    return f"{safe_name}-seed{seed}-{digest}"


def pretrained_model(task: Task, *, seed: int = 0, cache_dir: Path | None = None) -> nn.Module:
    """The task's model trained with its `train_budget`: from the cache, or trained and cached."""
    torch.manual_seed(seed)
    model = task.build_model()
    path = (cache_dir or default_cache_dir()) / f"{cache_key(task, model, seed)}.safetensors"
    if path.is_file():
        try:
            return load_weights(model, path).eval()
        except TaskError as error:  # e.g. a truncated file from a full disk: retrain, overwrite
            warnings.warn(f"ignoring unusable cached weights: {error}", stacklevel=2)
            torch.manual_seed(seed)
            model = task.build_model()
    train(model, task.data.train, task.train_budget, seed=seed, augment=task.augment)
    _save_atomically(model, path)
    return model.eval()


def load_weights(model: nn.Module, path: Path | str) -> nn.Module:
    """Load a safetensors state dict into `model` in place, with a clear error on any mismatch."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"weights file {str(path)!r} does not exist")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise TaskError(f"weights file {str(path)!r} is not a readable safetensors file ({error})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {_few(unexpected)}")
        for k in wrong[:3]:
            parts.append(f"shape of {k}: file {tuple(state[k].shape)}, model {tuple(expected[k].shape)}")
        raise TaskError(f"weights file {str(path)!r} does not fit the model: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)
    return model


def _few(names: list[str], limit: int = 3) -> str:
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _save_atomically(model: nn.Module, path: Path) -> None:
    # Cloned: safetensors refuses tensors that share storage (tied or aliased weights).
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as temporary:
        save_file(state, str(temporary))
