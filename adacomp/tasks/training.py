"""Training and accuracy, in torch and through onnxruntime.

One small, seeded loop serves the baseline, the recovery fine-tune of a compressed model and
knowledge distillation, so accuracies of different plans are comparable. The onnxruntime path
scores exactly what is deployed: an exported (possibly quantized) graph, not its torch source.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from adacomp.runtime.session import open_session
from adacomp.tasks._base import Augment, TaskError, TrainBudget, dataset_len
from adacomp.tasks.accelerator import CPU, Accelerator

__all__ = ["TrainReport", "TrainingDiverged", "evaluate", "evaluate_onnx", "predict_onnx", "train"]

# Losses of the last few steps are averaged so that final_loss is not one noisy batch.
_FINAL_LOSS_WINDOW = 10


class TrainingDiverged(TaskError):
    """The loss became NaN or infinite; usually a too-high lr or a broken compressed model."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"training diverged at step {step}: loss={loss}; expected a finite loss")
        self.step = step
        self.loss = loss

    def __reduce__(self) -> tuple[type[TrainingDiverged], tuple[int, float]]:
        # Rebuild from (step, loss), not from the message, so it survives pickling to workers.
        return (TrainingDiverged, (self.step, self.loss))


@dataclass(frozen=True)
class TrainReport:
    """What one call to train() did."""

    steps: int
    final_loss: float  # mean training loss over the last few steps
    seconds: float


def train(
    model: nn.Module,
    data: Dataset[tuple[Tensor, Tensor]],
    budget: TrainBudget,
    *,
    seed: int = 0,
    teacher: nn.Module | None = None,
    distill_weight: float = 0.5,
    temperature: float = 4.0,
    augment: Augment | None = None,
    span: tuple[int, int] | None = None,
    accelerator: Accelerator = CPU,
) -> TrainReport:
    """Train `model` in place with AdamW; distil from `teacher`'s logits when one is given.

    loss = (1 - w) * CE + w * T^2 * KL(teacher_T || student_T), the T^2 keeping gradient scale
    independent of T (Hinton et al., 2015). Shuffling and any dropout are seeded by `seed`
    without disturbing the caller's global RNG. Only `model.parameters()` are optimised, so
    models carrying torch.nn.utils.prune reparametrisations (weight_orig/weight_mask) train
    as they are: masks are buffers and stay fixed. `augment` transforms each training batch
    (the teacher sees the same augmented batch); the budget's schedule sets the lr per step.
    `span` (start, stop) trains only those steps of the budget, the lr where the whole run would
    have it: how a multi-fidelity search fine-tunes in stages (the optimizer's moments start
    afresh each stage; shuffling is seeded by `seed` and `start`). The model is left in eval() mode.

    The model trains where its parameters are (the caller places it and `teacher`); batches
    follow it. On CUDA, `accelerator` adds autocast (bf16, or fp16 with a gradient scaler),
    pinned batches copied without blocking, and DataLoader workers; on the CPU it changes
    nothing but the workers (by default none: the loop as it always was).
    """
    if not 0.0 <= distill_weight <= 1.0:
        raise TaskError(f"distill_weight={distill_weight!r}; expected a number in [0, 1]")
    if not (math.isfinite(temperature) and temperature > 0):
        raise TaskError(f"temperature={temperature!r}; expected a number > 0")
    size = dataset_len(data)
    total_steps = budget.num_steps(size)
    first, last = span if span is not None else (0, total_steps)
    if not 0 <= first < last <= total_steps:
        raise TaskError(f"span={span!r}; expected 0 <= start < stop <= {total_steps} (the budget's steps)")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise TaskError(f"model {type(model).__name__} has no trainable parameters")
    device = params[0].device
    cuda = device.type == "cuda"
    dtype = accelerator.dtype if cuda else None  # autocast never runs on the CPU
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    optimizer = torch.optim.AdamW(params, lr=budget.lr, weight_decay=budget.weight_decay)
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    if budget.schedule == "cosine" and first == 0:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    elif budget.schedule == "cosine":  # a later stage: the same curve, entered at `first`
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda i: 0.5 * (1.0 + math.cos(math.pi * (first + i) / total_steps))
        )
    if teacher is not None:
        teacher.eval()
    start = time.perf_counter()
    recent: list[float] = []
    step = first
    seed += first  # each stage of a staged run shuffles afresh (0 for a whole run: unchanged)
    try:
        with torch.random.fork_rng(devices=[device] if cuda else []):
            torch.manual_seed(seed)
            loader = DataLoader(
                data,
                batch_size=budget.batch_size,
                shuffle=True,
                # A last batch of one sample breaks BatchNorm statistics; drop it when we can.
                drop_last=size >= budget.batch_size,
                generator=torch.Generator().manual_seed(seed),
                num_workers=accelerator.loader_workers,
                pin_memory=accelerator.pin_memory and cuda,
            )
            augment_generator = torch.Generator().manual_seed(seed + 1)
            model.train()
            while step < last:
                for inputs, labels in loader:
                    if augment is not None:
                        inputs = augment(inputs, augment_generator)
                    inputs, labels = (
                        inputs.to(device, non_blocking=cuda),
                        labels.to(device, non_blocking=cuda),
                    )
                    with _autocast(device, dtype):
                        logits = model(inputs)
                        loss = F.cross_entropy(logits, labels)
                        if teacher is not None:
                            loss = (1.0 - distill_weight) * loss + distill_weight * _distill_loss(
                                logits, teacher, inputs, temperature
                            )
                    step += 1
                    value = float(loss.item())
                    if not math.isfinite(value):
                        raise TrainingDiverged(step, value)
                    optimizer.zero_grad(set_to_none=True)
                    if scaler is None:
                        loss.backward()  # type: ignore[no-untyped-call]
                        optimizer.step()
                    else:  # fp16: scaled so small gradients do not flush to zero; inf steps skipped
                        scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
                        scaler.step(optimizer)
                        scaler.update()
                    if scheduler is not None:
                        scheduler.step()
                    recent = [*recent[-(_FINAL_LOSS_WINDOW - 1) :], value]
                    if step >= last:
                        break
    finally:
        model.eval()
    return TrainReport(
        steps=step - first,
        final_loss=sum(recent) / len(recent),
        seconds=time.perf_counter() - start,
    )


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[object]:
    """Autocast to `dtype` on `device`, or nothing at all (fp32, the CPU path)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _distill_loss(student_logits: Tensor, teacher: nn.Module, inputs: Tensor, temperature: float) -> Tensor:
    """T^2-scaled KL divergence from the teacher's softened distribution to the student's."""
    with torch.no_grad():
        teacher_logits = teacher(inputs)
    kl = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=-1),
        F.log_softmax(teacher_logits / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    return kl * temperature**2


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset[tuple[Tensor, Tensor]], batch_size: int = 256) -> float:
    """Top-1 accuracy in [0, 1], in eval mode (BatchNorm uses running statistics)."""
    size = dataset_len(data)
    _check_batch_size(batch_size)
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    correct = 0
    for inputs, labels in DataLoader(data, batch_size=batch_size):
        predictions = model(inputs.to(device, non_blocking=device.type == "cuda")).argmax(dim=-1)
        correct += int((predictions.cpu() == labels).sum())
    return correct / size


def predict_onnx(onnx_model: bytes, x: np.ndarray) -> np.ndarray:
    """Logits of a serialized ONNX model on a float32 batch, with onnxruntime on the CPU."""
    return _run(_session(onnx_model), x)


def evaluate_onnx(onnx_model: bytes, data: Dataset[tuple[Tensor, Tensor]], batch_size: int = 256) -> float:
    """Top-1 accuracy of a serialized ONNX model; the score of what actually ships."""
    size = dataset_len(data)
    _check_batch_size(batch_size)
    session = _session(onnx_model)
    correct = 0
    for inputs, labels in DataLoader(data, batch_size=batch_size):
        logits = _run(session, inputs.numpy())
        correct += int((logits.argmax(axis=-1) == labels.numpy()).sum())
    return correct / size


def _session(onnx_model: bytes) -> ort.InferenceSession:
    """A session for scoring (the artifact's declared options too) on the threads torch was given
    (a Tune trial's worker: 1): ORT's default, one spinning thread per core, let one trial's
    accuracy pass take the cores of the trials beside it."""
    try:
        return open_session(onnx_model, threads=torch.get_num_threads(), spin=False)
    except Exception as error:  # onnxruntime raises its own unexported exception types
        raise TaskError(f"onnxruntime cannot load the model: {error}") from error


def _run(session: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    """Feed float32: exported models keep float32 IO even when their weights are int8."""
    name = session.get_inputs()[0].name
    outputs = session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})
    return np.asarray(outputs[0])


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise TaskError(f"batch_size={batch_size!r}; expected an integer >= 1")
