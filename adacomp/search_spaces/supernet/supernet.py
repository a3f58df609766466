"""The supernet: a user's model with its elastic parts swapped for elastic layers.

`Supernet.build(model, example_input)` copies the trained model, puts each width group's channels
in importance order (a permutation: the function is unchanged), and replaces the layers the
layout found elastic. `set_active(config)` selects a configuration in place (for training);
`extract(config)` returns a plain static model of it (for evaluation and export).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace

import torch
from torch import Tensor, nn

from adacomp.errors import AdacompError
from adacomp.search_spaces.sites import set_submodule
from adacomp.search_spaces.supernet.arch import PRECISIONS, SubnetConfig, SupernetSpace
from adacomp.search_spaces.supernet.elastic import (
    ElasticBatchNorm,
    ElasticBlock,
    ElasticChannelwiseConv,
    ElasticWeighted,
    is_elastic,
)
from adacomp.search_spaces.supernet.layout import ALTERNATIVES, SupernetLayout, WidthGroup, analyse_model

__all__ = ["Supernet", "SupernetOptions", "recalibrate_batchnorm"]

from dataclasses import dataclass


@dataclass(frozen=True)
class SupernetOptions:
    """What may be elastic; an empty fraction tuple turns that dimension off."""

    width_fractions: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    rank_fractions: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    depth: bool = True
    precisions: tuple[str, ...] = PRECISIONS
    alternatives: tuple[str, ...] = ALTERNATIVES  # branches a layer may hold instead of its weight
    residual_width: bool = False  # a residual stream's channels elastic (its producers as one)


def _normalised(scores: Tensor) -> Tensor:
    mean = scores.mean()
    return scores / mean if float(mean) > 0 else scores


@torch.no_grad()
def _importance(model: nn.Module, group: WidthGroup) -> Tensor:
    """Per channel: L1 of every producer's filter + BN's |gamma|/std + L1 of every reader's inputs."""
    score = torch.zeros(group.channels)
    for name in group.producers:
        weight = model.get_submodule(name).weight
        assert isinstance(weight, Tensor)
        score = score + _normalised(weight.abs().flatten(1).sum(1))
    for name in group.channelwise:
        module = model.get_submodule(name)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            assert module.running_var is not None
            score = score + _normalised(module.weight.abs() / (module.running_var + module.eps).sqrt())
        else:
            assert isinstance(module.weight, Tensor)
            score = score + _normalised(module.weight.abs().flatten(1).sum(1))
    for name, factor in group.consumers:
        consumer_weight = model.get_submodule(name).weight
        assert isinstance(consumer_weight, Tensor)
        per_input = consumer_weight.abs().transpose(0, 1).flatten(1).sum(1)  # (in,)
        score = score + _normalised(per_input.reshape(group.channels, factor).sum(1))
    return score


@torch.no_grad()
def _permute(model: nn.Module, group: WidthGroup, order: Tensor) -> None:
    """Reorder one group's channels everywhere they appear (the model computes the same)."""

    def take(tensor: Tensor | None, index: Tensor, dim: int = 0) -> None:
        if tensor is not None:
            tensor.copy_(tensor.index_select(dim, index))

    for name in group.producers:
        producer = model.get_submodule(name)
        take(producer.weight, order)  # type: ignore[arg-type]
        take(producer.bias, order)  # type: ignore[arg-type]
    for name in group.channelwise:
        module = model.get_submodule(name)
        take(module.weight, order)  # type: ignore[arg-type]
        take(module.bias, order)  # type: ignore[arg-type]
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            take(module.running_mean, order)
            take(module.running_var, order)
    for name, factor in group.consumers:
        columns = (order[:, None] * factor + torch.arange(factor)[None, :]).flatten()
        take(model.get_submodule(name).weight, columns, dim=1)  # type: ignore[arg-type]


class Supernet(nn.Module):
    def __init__(self, model: nn.Module, layout: SupernetLayout, space: SupernetSpace) -> None:
        super().__init__()
        self.model = model
        self.layout = layout
        self.space = space

    @classmethod
    def build(
        cls, model: nn.Module, example_input: Tensor, options: SupernetOptions | None = None
    ) -> Supernet:
        """A supernet from a trained model (the model itself is not modified)."""
        options = options or SupernetOptions()
        model = copy.deepcopy(model).eval()
        layout = analyse_model(
            model,
            example_input,
            min_rank_fraction=min(options.rank_fractions) if options.rank_fractions else None,
            depth=options.depth,
            alternatives=options.alternatives,
            residual_width=options.residual_width,
        )
        if not options.width_fractions:
            off = "width fixed: width elasticity is off"
            pinned = tuple((name, off) for g in layout.groups for name in g.producers)
            layout = replace(layout, groups=(), fixed=layout.fixed + pinned)
        for group in layout.groups:
            order = torch.argsort(_importance(model, group), descending=True, stable=True)
            _permute(model, group, order)
        ranked = {r.name for r in layout.rank_layers}
        weighted = ranked | {name for g in layout.groups for name in g.producers}
        weighted |= {name for g in layout.groups for name, _ in g.consumers}
        weighted |= {a.name for a in layout.alternatives}
        for name in sorted(weighted):
            layer = model.get_submodule(name)
            set_submodule(model, name, ElasticWeighted(layer, rank_elastic=name in ranked))  # type: ignore[arg-type]
        for alternative in layout.alternatives:
            elastic = model.get_submodule(alternative.name)
            assert isinstance(elastic, ElasticWeighted)
            for technique in alternative.techniques:
                elastic.add_alternative(technique, alternative.positions)
        for group in layout.groups:
            for name in group.channelwise:
                layer = model.get_submodule(name)
                if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                    set_submodule(model, name, ElasticBatchNorm(layer))
                else:
                    set_submodule(model, name, ElasticChannelwiseConv(layer))  # type: ignore[arg-type]
        for block in layout.blocks:
            set_submodule(model, block, ElasticBlock(model.get_submodule(block)))
        space = SupernetSpace(
            layout,
            width_fractions=options.width_fractions or (1.0,),
            rank_fractions=options.rank_fractions or (1.0,),
            precisions=options.precisions,
        )
        return cls(model, layout, space).eval()

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.model(x)
        return out

    def _module(self, name: str) -> nn.Module:
        """A layer by its name in the user's model (blocks wrap their contents in `.block`)."""
        path = name
        for block in self.layout.blocks:
            if name.startswith(block + "."):
                path = f"{block}.block.{name[len(block) + 1 :]}"
                break
        return self.model.get_submodule(path)

    def elastic_layer(self, name: str) -> ElasticWeighted:
        """The elastic form of a width- or rank-elastic layer (or one holding alternatives) of the
        user's model, by its name."""
        layer = self._module(name)
        if not isinstance(layer, ElasticWeighted):
            raise AdacompError(f"{name!r} is not an elastic layer of this supernet")
        return layer

    def set_active(self, config: SubnetConfig) -> SubnetConfig:
        """Make `config` the one the forward runs; returns it with defaults filled in."""
        config = self.space.validate(config)
        width, rank = dict(config.width), dict(config.rank)
        alternative = dict(config.alternative)
        for module in self.model.modules():
            if isinstance(module, ElasticWeighted):
                module.active_in, module.active_out = module.max_in, module.max_out
                module.active_alternative = None
        for layer_name, technique in alternative.items():
            self.elastic_layer(layer_name).active_alternative = technique
        for group in self.layout.groups:
            channels = width[group.producer]
            for name in group.producers:
                producer = self._module(name)
                assert isinstance(producer, ElasticWeighted)
                producer.active_out = channels
            for name in group.channelwise:
                channelwise = self._module(name)
                assert isinstance(channelwise, ElasticBatchNorm | ElasticChannelwiseConv)
                channelwise.active = channels
            for name, factor in group.consumers:
                consumer = self._module(name)
                assert isinstance(consumer, ElasticWeighted)
                consumer.active_in = channels * factor
        for name, value in rank.items():
            layer = self._module(name)
            assert isinstance(layer, ElasticWeighted)
            layer.active_rank = value
        for block in self.layout.blocks:
            elastic = self.model.get_submodule(block)
            assert isinstance(elastic, ElasticBlock)
            elastic.active = block not in config.skip
        return config

    @contextmanager
    def active(self, config: SubnetConfig) -> Iterator[SubnetConfig]:
        """Run with `config`, then back to the largest."""
        try:
            yield self.set_active(config)
        finally:
            self.set_active(self.space.largest())

    def extract(self, config: SubnetConfig) -> nn.Module:
        """A plain static model of `config`: ordinary torch layers only, weights copied."""
        with self.active(config):
            static = copy.deepcopy(self.model)
        elastic = [(name, m) for name, m in static.named_modules() if is_elastic(m)]
        for name, module in sorted(elastic, key=lambda item: -item[0].count(".")):
            set_submodule(static, name, module.to_static())
        return static.eval()

    def describe(self) -> Mapping[str, object]:
        return {
            "layout": self.layout.to_dict(),
            "widths": self.space.widths,
            "ranks": self.space.ranks,
            "precisions": list(self.space.precisions),
            "alternatives": {k: list(v) for k, v in self.space.alternatives.items()},
            "configurations": self.space.size,
        }


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: list[Tensor]) -> nn.Module:
    """Recompute BatchNorm running statistics of an extracted model (forward passes only).

    Statistics accumulated while training many widths at once fit none of them exactly; a few
    batches through the static model fix that (Once-for-All does the same). No weight changes.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or not batches:
        return model.eval()
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    model.train()
    try:
        for batch in batches:
            model(batch)
    finally:
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum
        model.eval()
    return model
