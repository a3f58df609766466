"""Where training runs: the CPU, or the CUDA device a Ray worker was given, and at which precision.

The choices are pure functions of what was asked (`resources.gpu`, `resources.mixed_precision`)
and what the process has (the GPU ids Ray assigned it, whether torch sees CUDA, whether the GPU
does bf16), so they are tested without a GPU; `choose_accelerator` asks torch and nothing else.
Ray sets CUDA_VISIBLE_DEVICES to the GPUs it assigned a worker, so the assigned one is `cuda:0`
there. Export, quantization, the farm and the ONNX accuracy of the shipped artifact stay on the
CPU: whoever moves a model to the accelerator moves it back before any of those.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from adacomp.tasks._base import TaskError

__all__ = ["CPU", "Accelerator", "MixedPrecision", "autocast_dtype", "choose_accelerator", "pick_device"]

MixedPrecision = Literal["auto", "on", "off"]


@dataclass(frozen=True)
class Accelerator:
    """How train() runs: on `device`, under autocast to `dtype` (None: fp32), with pinned
    batches and `loader_workers` DataLoader processes. The default is the CPU path as it always
    was (fp32, no workers, no pinning)."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype | None = None  # autocast dtype on CUDA; never set on the CPU
    pin_memory: bool = False
    loader_workers: int = 0

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def scales_gradients(self) -> bool:
        """fp16 gradients underflow without a scaler; bf16 has fp32's range and needs none."""
        return self.dtype == torch.float16


CPU = Accelerator()


def pick_device(gpu: float, gpu_ids: Sequence[object] | None, cuda_available: bool) -> torch.device:
    """`cuda:0` when a GPU was asked for (`gpu` > 0), is there (`gpu_ids`: what Ray assigned this
    worker, None outside Ray) and torch sees CUDA; else the CPU. A GPU Ray assigned that torch
    cannot see (a CPU build of torch on a GPU node) is refused: training on the CPU there
    would hold a GPU it never uses."""
    if gpu <= 0:
        return torch.device("cpu")
    if gpu_ids is not None and len(gpu_ids) == 0:
        return torch.device("cpu")  # in a Ray worker without a GPU (e.g. the driver's side)
    if not cuda_available:
        if gpu_ids:
            raise TaskError(
                f"resources.gpu: Ray assigned GPU {', '.join(map(str, gpu_ids))} but torch sees no CUDA "
                f"(torch {torch.__version__}: a CPU-only build?); install a CUDA build or set "
                "resources.gpu: 0"
            )
        return torch.device("cpu")  # outside Ray on a machine without a GPU: train on the CPU
    return torch.device("cuda", 0)  # Ray's CUDA_VISIBLE_DEVICES makes the assigned GPU the first


def autocast_dtype(mode: MixedPrecision, device: torch.device, bf16_supported: bool) -> torch.dtype | None:
    """The autocast dtype for training on `device`: none on the CPU or with `off`; on CUDA bf16
    where the GPU supports it (Ampere and later), else fp16 (with a gradient scaler)."""
    if device.type != "cuda" or mode == "off":
        return None
    return torch.bfloat16 if bf16_supported else torch.float16


def choose_accelerator(
    gpu: float,
    mixed_precision: MixedPrecision = "auto",
    *,
    gpu_ids: Sequence[object] | None = None,
    pin_memory: bool = True,
    loader_workers: int = 0,
) -> Accelerator:
    """The accelerator for this process; see pick_device and autocast_dtype."""
    device = pick_device(gpu, gpu_ids, torch.cuda.is_available())
    cuda = device.type == "cuda"
    bf16 = cuda and torch.cuda.is_bf16_supported()
    return Accelerator(
        device=device,
        dtype=autocast_dtype(mixed_precision, device, bf16),
        pin_memory=pin_memory and cuda,
        loader_workers=loader_workers,
    )
