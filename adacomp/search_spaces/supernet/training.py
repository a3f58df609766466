"""Ensemble training of a supernet: the sandwich rule with in-place distillation.

Each step trains the largest configuration on the labels, then the smallest and a few sampled
ones on the largest's (detached) soft predictions, accumulating gradients into one optimizer
step (Yu & Huang's sandwich rule; AdaSpring's ensemble training; BigNAS's in-place distillation).
Batches and sampled configurations are functions of (seed, step), so a run resumed from a
checkpoint takes exactly the steps an uninterrupted one would have taken.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.utils.data import Dataset

from adacomp.errors import AdacompError
from adacomp.safe_load import load_json_file
from adacomp.search_spaces.supernet.alternatives import BranchFit, distil_alternatives
from adacomp.search_spaces.supernet.arch import SubnetConfig
from adacomp.search_spaces.supernet.supernet import Supernet
from adacomp.tasks._base import TaskError, dataset_len
from adacomp.tasks.accelerator import CPU, Accelerator

__all__ = ["EnsembleBudget", "EnsembleReport", "StepLog", "load_checkpoint", "train_supernet"]

LATEST = "LATEST"  # names the newest complete checkpoint directory; replaced atomically
# Alternative branches are distilled to their layer's output on this many training batches, for
# this many steps, before the ensemble's first step (alternatives.py).
DISTIL_BATCHES = 4
DISTIL_STEPS = 200


@dataclass(frozen=True)
class EnsembleBudget:
    steps: int = 600
    batch_size: int = 64
    lr: float = 1e-3  # Adam; the supernet starts from trained weights, so lower than from scratch
    sampled: int = 2  # random configurations per step besides the largest and the smallest
    distill_weight: float = 1.0  # children: w * KD(largest) + (1 - w) * CE(labels)
    temperature: float = 1.0
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise TaskError(f"EnsembleBudget.{name}={getattr(self, name)!r}; expected an integer >= 1")
        if self.sampled < 0:
            raise TaskError(f"EnsembleBudget.sampled={self.sampled!r}; expected an integer >= 0")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise TaskError(f"EnsembleBudget.lr={self.lr!r}; expected a number > 0")
        if not 0 <= self.distill_weight <= 1:
            raise TaskError(f"EnsembleBudget.distill_weight={self.distill_weight!r}; expected 0..1")
        if not self.temperature > 0:
            raise TaskError(f"EnsembleBudget.temperature={self.temperature!r}; expected a number > 0")


@dataclass(frozen=True)
class StepLog:
    step: int
    largest_loss: float
    smallest_loss: float
    seconds: float


@dataclass
class EnsembleReport:
    steps: int  # the step reached (== budget.steps when finished)
    resumed_from: int
    seconds: float
    log: list[StepLog] = field(default_factory=list)
    branch_fits: list[BranchFit] = field(default_factory=list)  # alternatives distilled before step 1


def _batch(data: Dataset[tuple[Tensor, Tensor]], size: int, batch_size: int, seed: int, step: int) -> Any:
    """The step's batch: epoch-wise shuffles seeded by (seed, epoch), drop_last."""
    per_epoch = max(1, size // batch_size)
    epoch, index = divmod(step, per_epoch)
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    chosen = order[index * batch_size : (index + 1) * batch_size].tolist()
    items = [data[i] for i in chosen]
    return torch.stack([x for x, _ in items]), torch.stack([torch.as_tensor(y) for _, y in items])


def step_configs(supernet: Supernet, budget: EnsembleBudget, seed: int, step: int) -> list[SubnetConfig]:
    """Largest, smallest, then `sampled` random configurations (precision plays no part in training)."""
    rng = random.Random(f"{seed}:{step}")
    space = supernet.space
    return [space.largest(), space.smallest(), *(space.sample(rng) for _ in range(budget.sampled))]


def _distill(logits: Tensor, teacher: Tensor, labels: Tensor, budget: EnsembleBudget) -> Tensor:
    t = budget.temperature
    kd = F.kl_div(
        F.log_softmax(logits / t, dim=-1),
        F.log_softmax(teacher / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    ) * (t * t)
    if budget.distill_weight >= 1:
        return kd
    return budget.distill_weight * kd + (1 - budget.distill_weight) * F.cross_entropy(logits, labels)


def average_gradients(model: torch.nn.Module) -> None:
    """All-reduce (mean) of every gradient. Ranks ran the same configurations, so the same
    parameters have gradients everywhere; those without stay None (Adam skips them, as it would
    in one process)."""
    import torch.distributed as dist

    world = dist.get_world_size()
    for param in model.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad /= world


def broadcast_parameters(model: torch.nn.Module) -> None:
    """Every rank takes rank 0's parameters (after a step each rank took alone, such as
    distilling the alternatives, which a GPU need not compute bit for bit alike)."""
    import torch.distributed as dist

    for param in model.parameters():
        dist.broadcast(param.data, 0)


def save_checkpoint(
    directory: Path, supernet: Supernet, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """A new `step-N/` directory, then LATEST is switched to it; older ones are removed."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"step-{state['step']:07d}"
    target = directory / name
    partial = directory / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    weights = {k: v.detach().cpu().contiguous().clone() for k, v in supernet.state_dict().items()}
    save_file(weights, str(partial / "supernet.safetensors"))
    torch.save(_on_cpu(optimizer.state_dict()), partial / "optimizer.pt")
    (partial / "state.json").write_text(json.dumps(state, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)
    pointer = directory / f".{LATEST}.tmp"
    pointer.write_text(name)
    os.replace(pointer, directory / LATEST)
    for old in directory.glob("step-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)


def _on_cpu(value: Any) -> Any:
    """An optimizer state with every tensor on the CPU (a checkpoint loads on any machine)."""
    if isinstance(value, Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _on_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_on_cpu(v) for v in value]
    return value


def load_checkpoint(directory: Path) -> tuple[dict[str, Tensor], dict[str, Any], Path] | None:
    """(weights, state, path) of the newest complete checkpoint, or None."""
    pointer = directory / LATEST
    if not pointer.exists():
        return None
    path = directory / pointer.read_text().strip()
    try:
        state = load_json_file(path / "state.json", "supernet checkpoint state")
        weights = load_file(str(path / "supernet.safetensors"))
    except (OSError, ValueError) as error:
        raise AdacompError(f"supernet checkpoint {path}: unreadable ({error})") from None
    return weights, state, path


def train_supernet(
    supernet: Supernet,
    data: Dataset[tuple[Tensor, Tensor]],
    budget: EnsembleBudget,
    *,
    seed: int = 0,
    checkpoint_dir: Path | None = None,
    identity: dict[str, Any] | None = None,
    on_step: Callable[[StepLog], None] | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
    rank: int = 0,
    world_size: int = 1,
    accelerator: Accelerator = CPU,
) -> EnsembleReport:
    """Train in place; with `checkpoint_dir`, resume from its newest checkpoint and save every
    `checkpoint_every` steps. `identity` (JSON-able) must match the checkpoint's to resume; the
    number of steps may grow (training on from where a shorter budget stopped).

    Data parallel (`world_size` > 1, torch.distributed initialised): every rank takes the same
    global batch and configurations, keeps its `rank::world_size` share of the batch, and the
    gradients are averaged before each step, so the update is the single-process one up to
    per-shard BatchNorm statistics. Only rank 0 writes checkpoints; every rank resumes from them.

    On a CUDA `accelerator` the supernet trains there (under autocast, with a gradient scaler
    for fp16) and is back on the CPU when this returns or raises; checkpoints hold CPU tensors
    either way, and `on_checkpoint` sees the supernet on the accelerator.
    """
    if not 0 <= rank < world_size:
        raise AdacompError(f"rank={rank} with world_size={world_size}; expected 0 <= rank < world_size")
    size = dataset_len(data)
    identity = {
        **(identity or {}),
        "seed": seed,
        "budget": {**asdict(budget), "steps": None, "checkpoint_every": None},
    }
    device = accelerator.device
    if accelerator.cuda:
        supernet.to(device)
    dtype = accelerator.dtype if accelerator.cuda else None
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    amp: contextlib.AbstractContextManager[Any] = (
        torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    )
    optimizer = torch.optim.Adam(supernet.parameters(), lr=budget.lr)
    start = 0
    if checkpoint_dir is not None and (found := load_checkpoint(checkpoint_dir)) is not None:
        weights, state, path = found
        if state.get("identity") != json.loads(json.dumps(identity)):
            raise AdacompError(
                f"supernet checkpoint {path} was trained with other settings; "
                "remove the directory or train with the same settings"
            )
        supernet.load_state_dict(weights)
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu"))
        start = int(state["step"])
    report = EnsembleReport(steps=start, resumed_from=start, seconds=0.0)
    began = time.perf_counter()
    if start == 0 and supernet.layout.alternatives:  # a resumed run has them in its checkpoint
        batches = [
            _batch(data, size, budget.batch_size, seed, i)[0].to(device) for i in range(DISTIL_BATCHES)
        ]
        report.branch_fits = distil_alternatives(supernet, batches, steps=DISTIL_STEPS)
    supernet.train()
    try:
        for step in range(start, budget.steps):
            t0 = time.perf_counter()
            inputs, labels = _batch(data, size, budget.batch_size, seed, step)
            if world_size > 1:
                inputs, labels = inputs[rank::world_size], labels[rank::world_size]
            if accelerator.cuda:
                inputs, labels = inputs.to(device), labels.to(device)
            optimizer.zero_grad(set_to_none=True)
            losses = []
            teacher: Tensor | None = None
            for i, config in enumerate(step_configs(supernet, budget, seed, step)):
                supernet.set_active(config)
                with amp:
                    logits = supernet(inputs)
                    if teacher is None:
                        loss = F.cross_entropy(logits, labels)
                        teacher = logits.detach()
                    else:
                        loss = _distill(logits, teacher, labels, budget)
                value = float(loss.item())
                if not math.isfinite(value):
                    raise AdacompError(
                        f"supernet training diverged at step {step + 1} (configuration {i}): loss={value}"
                    )
                (loss if scaler is None else scaler.scale(loss)).backward()  # type: ignore[no-untyped-call]
                losses.append(value)
            if world_size > 1:
                average_gradients(supernet)
            if scaler is None:
                optimizer.step()
            else:
                scaler.step(optimizer)
                scaler.update()
            entry = StepLog(step + 1, losses[0], losses[1], time.perf_counter() - t0)
            report.log.append(entry)
            report.steps = step + 1
            if on_step is not None:
                on_step(entry)
            done = step + 1 == budget.steps
            if (
                checkpoint_dir is not None
                and rank == 0
                and ((step + 1) % budget.checkpoint_every == 0 or done)
            ):
                state = {"step": step + 1, "identity": identity, "saved_at": time.time()}
                supernet.set_active(supernet.space.largest())
                save_checkpoint(checkpoint_dir, supernet, optimizer, state)
                if on_checkpoint is not None:
                    on_checkpoint(step + 1)
    finally:
        supernet.set_active(supernet.space.largest())
        supernet.eval()
        if accelerator.cuda:
            supernet.cpu()
    report.seconds = time.perf_counter() - began
    return report
