"""Elastic layers: the largest weights plus `active_*` knobs, and a plain static layer on demand.

A supernet trains these in place of the user's layers. Each forward uses only the active slice:
the first `active_out` output channels (channels are kept in importance order, so the first ones
matter most), the first `active_in` inputs (set from the producer's active width), the first
`active_rank` components of shared low-rank factors (singular-value order). `to_static()` copies
the active slice into an ordinary `nn.Conv*d`/`nn.Linear`/`nn.BatchNorm*d` (or the factorised
`LowRank` pair when that is smaller), so no elastic code runs on the device.

A layer may also hold *alternative* branches (AdaSpring's alternative operators): its
depthwise-separable form or, for a head reading a flattened map, a global-average-pooling head.
A branch follows the layer's active widths, and `active_alternative` selects it in place of the
layer's own weight; `to_static()` then builds exactly the module the technique of that name
builds (`DepthwiseSeparable`, `GapLinear`), so a plan naming the technique means the same model.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adacomp.search_spaces.techniques.depthwise_separable import DepthwiseSeparable, separable_weights
from adacomp.search_spaces.techniques.gap_head import GapLinear, pooled_weight
from adacomp.search_spaces.techniques.low_rank import LowRank, split_svd

__all__ = [
    "ElasticBatchNorm",
    "ElasticBlock",
    "ElasticChannelwiseConv",
    "ElasticGapHead",
    "ElasticSeparable",
    "ElasticWeighted",
    "is_elastic",
]

_CONV_FN: dict[int, Any] = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_CLS: dict[int, Any] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def _kernel(layer: nn.Module) -> tuple[int, ...]:
    size: tuple[int, ...] = layer.kernel_size  # type: ignore[assignment]
    return tuple(size)


def _conv(dims: int, in_c: int, out_c: int, kernel: Any, like: Tensor, **kwargs: Any) -> Any:
    """A static conv of `dims` dimensions on the device and dtype of `like`."""
    return _CONV_CLS[dims](in_c, out_c, kernel, device=like.device, dtype=like.dtype, **kwargs)


class ElasticWeighted(nn.Module):
    """A Linear or ungrouped conv with elastic input/output widths and, optionally, elastic rank.

    Dense: `weight` (out, in, *kernel). Rank-elastic: shared factors `reduce` (R, in, *kernel)
    and `expand` (out, R) from the SVD of the trained weight, so that full rank reproduces it
    and a truncated rank is the best approximation of its size to start training from.
    """

    def __init__(self, layer: nn.Linear | nn.modules.conv._ConvNd, *, rank_elastic: bool) -> None:
        super().__init__()
        weight = layer.weight.detach()
        self.is_linear = isinstance(layer, nn.Linear)
        self.kernel_size: tuple[int, ...] = () if self.is_linear else _kernel(layer)
        self.stride: Any = None if self.is_linear else layer.stride
        self.padding: Any = None if self.is_linear else layer.padding
        self.dilation: Any = None if self.is_linear else layer.dilation
        if not self.is_linear and getattr(layer, "padding_mode", "zeros") != "zeros":
            raise ValueError(f"padding_mode={layer.padding_mode!r}; elastic convs support 'zeros'")
        self.max_out, self.max_in = int(weight.shape[0]), int(weight.shape[1])
        self.active_out, self.active_in = self.max_out, self.max_in
        self.rank_elastic = rank_elastic
        if rank_elastic:
            self.max_rank = min(self.max_out, self.max_in * self.kernel_numel)
            left, right = split_svd(weight.flatten(1), self.max_rank)  # (out, R), (R, in * kernel)
            self.reduce = nn.Parameter(right.reshape(self.max_rank, self.max_in, *self.kernel_size).clone())
            self.expand = nn.Parameter(left.clone())
            self.active_rank = self.max_rank
        else:
            self.max_rank = 0
            self.weight = nn.Parameter(weight.clone())
            self.active_rank = 0
        bias = layer.bias
        self.bias = nn.Parameter(bias.detach().clone()) if isinstance(bias, Tensor) else None
        self.alternatives = nn.ModuleDict()  # technique name -> branch (empty: no state_dict keys)
        self.active_alternative: str | None = None

    def add_alternative(self, technique: str, positions: int = 1) -> None:
        """A branch of `technique` started from this layer's current (full) weight."""
        branch: nn.Module
        if technique == "depthwise_separable":
            branch = ElasticSeparable(self)
        elif technique == "gap_head":
            branch = ElasticGapHead(self, positions)
        else:
            raise ValueError(f"no elastic alternative {technique!r}")
        self.alternatives[technique] = branch

    @property
    def kernel_numel(self) -> int:
        return math.prod(self.kernel_size) if self.kernel_size else 1

    def _apply_weight(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if self.is_linear:
            return F.linear(x, weight, bias)
        fn = _CONV_FN[len(self.kernel_size)]
        out: Tensor = fn(x, weight, bias, self.stride, self.padding, self.dilation)
        return out

    def forward(self, x: Tensor) -> Tensor:
        out_c, in_c = self.active_out, self.active_in
        if self.active_alternative is not None:
            branch: Tensor = self.alternatives[self.active_alternative](x, in_c, out_c)
            return branch
        bias = self.bias[:out_c] if self.bias is not None else None
        if not self.rank_elastic:
            return self._apply_weight(x, self.weight[:out_c, :in_c], bias)
        r = self.active_rank
        hidden = self._apply_weight(x, self.reduce[:r, :in_c], None)  # (N, r, ...)
        expand = self.expand[:out_c, :r]
        if self.is_linear:
            return F.linear(hidden, expand, bias)
        ones = (1,) * len(self.kernel_size)
        fn = _CONV_FN[len(self.kernel_size)]
        result: Tensor = fn(hidden, expand.reshape(out_c, r, *ones), bias)
        return result

    def dense_weight(self) -> Tensor:
        """The active weight as one dense tensor (out, in, *kernel)."""
        out_c, in_c = self.active_out, self.active_in
        if not self.rank_elastic:
            return self.weight[:out_c, :in_c].detach()
        r = self.active_rank
        right = self.reduce[:r, :in_c].detach().flatten(1)
        return (self.expand[:out_c, :r].detach() @ right).reshape(out_c, in_c, *self.kernel_size)

    def factorised_is_smaller(self) -> bool:
        if not self.rank_elastic or self.active_alternative is not None:
            return False
        dense = self.active_out * self.active_in * self.kernel_numel
        return self.active_rank * (self.active_in * self.kernel_numel + self.active_out) < dense

    @torch.no_grad()
    def to_static(self) -> nn.Module:
        out_c, in_c = self.active_out, self.active_in
        if self.active_alternative is not None:
            branch = self.alternatives[self.active_alternative]
            assert isinstance(branch, ElasticSeparable | ElasticGapHead)
            return branch.to_static(in_c, out_c)
        has_bias = self.bias is not None
        if self.factorised_is_smaller():
            r = self.active_rank
            if self.is_linear:
                reduce: Any = nn.Linear(in_c, r, bias=False)
                expand: Any = nn.Linear(r, out_c, bias=has_bias)
                reduce.weight.copy_(self.reduce[:r, :in_c])
                expand.weight.copy_(self.expand[:out_c, :r])
            else:
                dims, like = len(self.kernel_size), self.reduce
                reduce = _conv(
                    dims,
                    in_c,
                    r,
                    self.kernel_size,
                    like,
                    stride=self.stride,
                    padding=self.padding,
                    dilation=self.dilation,
                    bias=False,
                )
                ones = (1,) * dims
                expand = _conv(dims, r, out_c, ones, like, bias=has_bias)
                reduce.weight.copy_(self.reduce[:r, :in_c])
                expand.weight.copy_(self.expand[:out_c, :r].reshape(out_c, r, *ones))
            if has_bias:
                assert self.bias is not None
                expand.bias.copy_(self.bias[:out_c])
            return LowRank(reduce, expand)
        weight = self.dense_weight()
        if self.is_linear:
            static: Any = nn.Linear(in_c, out_c, bias=has_bias, device=weight.device, dtype=weight.dtype)
        else:
            static = _conv(
                len(self.kernel_size),
                in_c,
                out_c,
                self.kernel_size,
                weight,
                stride=self.stride,
                padding=self.padding,
                dilation=self.dilation,
                bias=has_bias,
            )
        static.weight.copy_(weight)
        if has_bias:
            assert self.bias is not None
            static.bias.copy_(self.bias[:out_c])
        out: nn.Module = static
        return out

    def extra_repr(self) -> str:
        rank = f", rank={self.active_rank}/{self.max_rank}" if self.rank_elastic else ""
        alternative = f", as {self.active_alternative}" if self.active_alternative else ""
        return f"in={self.active_in}/{self.max_in}, out={self.active_out}/{self.max_out}{rank}{alternative}"


class ElasticSeparable(nn.Module):
    """The depthwise-separable form (multiplier 1) of an elastic conv, on its active widths:
    a depthwise conv over the first `in` channels, then a pointwise conv to the first `out`.
    Started from the per-input-channel rank-1 fit of the layer's weight (the technique's own
    initialisation); the supernet then distils it to the layer's output (training.py)."""

    def __init__(self, layer: ElasticWeighted) -> None:
        super().__init__()
        depthwise, pointwise = separable_weights(layer.dense_weight(), 1)
        self.depthwise = nn.Parameter(depthwise.clone())  # (in, 1, *kernel)
        self.pointwise = nn.Parameter(pointwise.clone())  # (out, in, *1)
        self.bias = nn.Parameter(layer.bias.detach().clone()) if layer.bias is not None else None
        self.kernel_size = layer.kernel_size
        self.stride, self.padding, self.dilation = layer.stride, layer.padding, layer.dilation

    def forward(self, x: Tensor, in_c: int, out_c: int) -> Tensor:
        fn = _CONV_FN[len(self.kernel_size)]
        hidden = fn(x, self.depthwise[:in_c], None, self.stride, self.padding, self.dilation, in_c)
        bias = self.bias[:out_c] if self.bias is not None else None
        out: Tensor = fn(hidden, self.pointwise[:out_c, :in_c], bias)
        return out

    @torch.no_grad()
    def to_static(self, in_c: int, out_c: int) -> nn.Module:
        dims, like = len(self.kernel_size), self.depthwise
        depthwise = _conv(
            dims,
            in_c,
            in_c,
            self.kernel_size,
            like,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=in_c,
            bias=False,
        )
        pointwise = _conv(dims, in_c, out_c, (1,) * dims, like, bias=self.bias is not None)
        depthwise.weight.copy_(self.depthwise[:in_c])
        pointwise.weight.copy_(self.pointwise[:out_c, :in_c])
        if self.bias is not None:
            pointwise.bias.copy_(self.bias[:out_c])
        return DepthwiseSeparable(depthwise, pointwise)


class ElasticGapHead(nn.Module):
    """The global-average-pooling form of a Linear that reads a flattened (C, positions) map:
    the positions are averaged and a Linear reads the first `in / positions` channels. Started
    from the per-channel sums of the layer's weight (the technique's own initialisation)."""

    def __init__(self, layer: ElasticWeighted, positions: int) -> None:
        super().__init__()
        if layer.max_in % positions:
            raise ValueError(f"{layer.max_in} input features are not channels x {positions} positions")
        self.positions = positions
        weight = pooled_weight(layer.dense_weight(), layer.max_in // positions, positions)
        self.weight = nn.Parameter(weight.clone())  # (out, channels)
        self.bias = nn.Parameter(layer.bias.detach().clone()) if layer.bias is not None else None

    def forward(self, x: Tensor, in_c: int, out_c: int) -> Tensor:
        channels = in_c // self.positions
        pooled = x.reshape(x.shape[0], channels, self.positions).mean(dim=2)
        bias = self.bias[:out_c] if self.bias is not None else None
        return F.linear(pooled, self.weight[:out_c, :channels], bias)

    @torch.no_grad()
    def to_static(self, in_c: int, out_c: int) -> nn.Module:
        channels = in_c // self.positions
        like = self.weight
        linear = nn.Linear(channels, out_c, bias=self.bias is not None, device=like.device, dtype=like.dtype)
        linear.weight.copy_(self.weight[:out_c, :channels])
        if self.bias is not None:
            linear.bias.copy_(self.bias[:out_c])
        return GapLinear(channels, self.positions, linear)


class ElasticChannelwiseConv(nn.Module):
    """A depthwise conv (groups == channels) that follows its producer's active width."""

    def __init__(self, layer: nn.modules.conv._ConvNd) -> None:
        super().__init__()
        self.weight = nn.Parameter(layer.weight.detach().clone())  # (C, 1, *kernel)
        bias = layer.bias
        self.bias = nn.Parameter(bias.detach().clone()) if isinstance(bias, Tensor) else None
        self.kernel_size = tuple(layer.kernel_size)
        self.stride, self.padding, self.dilation = layer.stride, layer.padding, layer.dilation
        self.max_channels = int(self.weight.shape[0])
        self.active = self.max_channels

    def forward(self, x: Tensor) -> Tensor:
        c = self.active
        bias = self.bias[:c] if self.bias is not None else None
        fn = _CONV_FN[len(self.kernel_size)]
        out: Tensor = fn(x, self.weight[:c], bias, self.stride, self.padding, self.dilation, c)
        return out

    @torch.no_grad()
    def to_static(self) -> nn.Module:
        c = self.active
        static = _conv(
            len(self.kernel_size),
            c,
            c,
            self.kernel_size,
            self.weight,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=c,
            bias=self.bias is not None,
        )
        static.weight.copy_(self.weight[:c])
        if self.bias is not None:
            static.bias.copy_(self.bias[:c])
        out: nn.Module = static
        return out

    def extra_repr(self) -> str:
        return f"channels={self.active}/{self.max_channels}, depthwise"


class ElasticBatchNorm(nn.Module):
    """BatchNorm over the first `active` channels; running statistics are shared slices."""

    def __init__(self, layer: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        if not (layer.affine and layer.track_running_stats):
            raise ValueError("elastic BatchNorm needs affine=True and track_running_stats=True")
        assert layer.running_mean is not None and layer.running_var is not None
        self.weight = nn.Parameter(layer.weight.detach().clone())
        self.bias = nn.Parameter(layer.bias.detach().clone())
        self.register_buffer("running_mean", layer.running_mean.detach().clone())
        self.register_buffer("running_var", layer.running_var.detach().clone())
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))
        self.eps, self.momentum = layer.eps, layer.momentum
        self.max_channels = int(self.weight.shape[0])
        self.active = self.max_channels
        self._cls: type[nn.modules.batchnorm._BatchNorm] = type(layer)

    running_mean: Tensor
    running_var: Tensor
    num_batches_tracked: Tensor

    def forward(self, x: Tensor) -> Tensor:
        c = self.active
        factor = 0.0
        if self.training:
            self.num_batches_tracked.add_(1)
            factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        # Slices are views: batch statistics update the shared buffers in place.
        return F.batch_norm(
            x,
            self.running_mean[:c],
            self.running_var[:c],
            self.weight[:c],
            self.bias[:c],
            self.training,
            factor,
            self.eps,
        )

    @torch.no_grad()
    def to_static(self) -> nn.Module:
        c = self.active
        static = self._cls(c, eps=self.eps, momentum=self.momentum)
        static.weight.copy_(self.weight[:c])
        static.bias.copy_(self.bias[:c])
        assert static.running_mean is not None and static.running_var is not None
        static.running_mean.copy_(self.running_mean[:c])
        static.running_var.copy_(self.running_var[:c])
        return static

    def extra_repr(self) -> str:
        return f"channels={self.active}/{self.max_channels}"


class ElasticBlock(nn.Module):
    """A shape-preserving block that can be skipped (depth elasticity): identity when inactive."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block
        self.active = True

    def forward(self, x: Tensor) -> Tensor:
        if not self.active:
            return x
        out: Tensor = self.block(x)
        return out

    def to_static(self) -> nn.Module:
        return self.block if self.active else nn.Identity()

    def extra_repr(self) -> str:
        return "active" if self.active else "skipped"


def is_elastic(module: nn.Module) -> bool:
    return isinstance(module, ElasticWeighted | ElasticChannelwiseConv | ElasticBatchNorm | ElasticBlock)
