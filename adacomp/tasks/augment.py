"""Training-batch augmentations for the built-in tasks (see `adacomp.tasks.Augment`).

Dataclasses rather than closures: they pickle to Ray workers, and their repr (which names
every parameter) is part of the baseline cache key, so changed augmentation retrains.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["RandomCrop"]


@dataclass(frozen=True)
class RandomCrop:
    """A random crop of the zero-padded image back to its size (a shift by up to `padding`
    pixels each way), then a horizontal flip with probability 1/2 when `flip` is set."""

    padding: int
    flip: bool = False

    def __post_init__(self) -> None:
        if self.padding < 0:
            raise ValueError(f"RandomCrop.padding={self.padding!r}; expected an integer >= 0")

    def __call__(self, inputs: Tensor, generator: torch.Generator) -> Tensor:
        batch, channels, height, width = inputs.shape
        pad = self.padding
        out = inputs
        if pad > 0:
            padded = F.pad(inputs, (pad, pad, pad, pad))
            offsets = torch.randint(0, 2 * pad + 1, (2, batch), generator=generator)
            rows = (offsets[0][:, None] + torch.arange(height)[None, :])[:, None, :, None]
            cols = (offsets[1][:, None] + torch.arange(width)[None, :])[:, None, None, :]
            index = torch.arange(batch)[:, None, None, None]
            channel = torch.arange(channels)[None, :, None, None]
            out = padded[index, channel, rows, cols]
        if self.flip:
            flipped = torch.rand(batch, generator=generator) < 0.5
            out = torch.where(flipped[:, None, None, None], out.flip(-1), out)
        return out
