"""Start each alternative branch where its layer is: distilled to the layer's own output.

A branch begins from the closed-form fit of the layer's *weight* (per input channel, the best
rank-1 separable kernel; per channel, the summed head weight), which ignores the data the layer
actually sees. Before the ensemble trains it with everything else, each branch is fitted to the
layer's *output* on real activations of the trained model (the inputs the layer receives at the
largest configuration), as AdaSpring initialises its alternative operators: a few hundred cheap
steps on one layer instead of the whole network, so the ensemble starts from branches that
already stand in for their layer rather than from ones that break the network around them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from adacomp.search_spaces.supernet.elastic import ElasticWeighted
from adacomp.search_spaces.supernet.supernet import Supernet

__all__ = ["BranchFit", "distil_alternatives"]


@dataclass(frozen=True)
class BranchFit:
    """How well a branch stands in for its layer: mean squared error over the output's variance."""

    layer: str
    technique: str
    before: float
    after: float


def _captured(supernet: Supernet, batches: Sequence[Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
    """(inputs, outputs) of every layer holding alternatives, at the largest configuration."""
    layers = {a.name: supernet.elastic_layer(a.name) for a in supernet.layout.alternatives}
    seen: dict[str, list[tuple[Tensor, Tensor]]] = {name: [] for name in layers}
    handles = [
        layer.register_forward_hook(
            lambda _m, args, out, name=name: seen[name].append((args[0].detach(), out.detach()))
        )
        for name, layer in layers.items()
    ]
    was_training = supernet.training
    supernet.eval()
    try:
        with torch.no_grad(), supernet.active(supernet.space.largest()):
            for batch in batches:
                supernet(batch)
    finally:
        for handle in handles:
            handle.remove()
        supernet.train(was_training)
    return {
        name: (torch.cat([x for x, _ in pairs]), torch.cat([y for _, y in pairs]))
        for name, pairs in seen.items()
    }


def _relative_error(layer: ElasticWeighted, technique: str, x: Tensor, y: Tensor) -> Tensor:
    branch = layer.alternatives[technique]
    out = branch(x, layer.max_in, layer.max_out)
    return F.mse_loss(out, y) / y.var().clamp_min(1e-12)


def distil_alternatives(
    supernet: Supernet, batches: Sequence[Tensor], *, steps: int = 200, lr: float = 1e-2
) -> list[BranchFit]:
    """Fit every branch to its layer's output on `batches` (Adam, `steps` full-batch steps);
    only the branches' own parameters change. Deterministic for fixed batches on the CPU."""
    if not supernet.layout.alternatives or not batches or steps < 1:
        return []
    captured = _captured(supernet, batches)
    fits = []
    for alternative in supernet.layout.alternatives:
        layer = supernet.elastic_layer(alternative.name)
        x, y = captured[alternative.name]
        for technique in alternative.techniques:
            params = list(layer.alternatives[technique].parameters())
            with torch.no_grad():
                before = float(_relative_error(layer, technique, x, y))
            initial = [p.detach().clone() for p in params]
            optimizer = torch.optim.Adam(params, lr=lr)
            for _ in range(steps):
                optimizer.zero_grad(set_to_none=True)
                _relative_error(layer, technique, x, y).backward()  # type: ignore[no-untyped-call]
                optimizer.step()
            with torch.no_grad():
                after = float(_relative_error(layer, technique, x, y))
                if not after < before:  # never leave a branch worse than its closed-form start
                    for p, saved in zip(params, initial, strict=True):
                        p.copy_(saved)
                    after = before
            for p in params:
                p.grad = None
            fits.append(BranchFit(alternative.name, technique, before, after))
    return fits
