"""Models to calibrate an emulator on: what the search explores, and every kernel kind around it.

nn-Meter samples kernel configurations where its predictor is weakest; here the unit measured is
a whole small model (a phone or an agent can only time models), so each generated model mixes
kernels: the built-in models under random compression plans (what a search produces), and
random networks built from the blocks real mobile models use, at many widths, resolutions,
kernel sizes, strides and precisions: plain conv + BN + activation, inverted residuals with a
depthwise conv and a skip Add, ResNet basic blocks, pooling, and MLP heads. `weights` biases the
block mix towards kernel kinds (adaptive sampling: more of what the fit predicts worst).
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import optuna
import torch
from torch import Tensor, nn

from adacomp.errors import first_line
from adacomp.platform.ops.mobile_blocks import MBConv, ShuffleUnit
from adacomp.platform.strategies.plan_space import plan_from_params, suggest
from adacomp.search_spaces import CompressionPlan, Step, build_space, compress, export_onnx
from adacomp.tasks import Task, load_task

# Most channels an expansion (inverted residual, MBConv) widens to: wider only makes a model slower
# to measure (seconds a pass at 128 px), not its kernels more varied.
MAX_HIDDEN = 768
# Draws allowed per model asked for before the generator gives up (each skipped model draws again).
MAX_DRAWS_PER_MODEL = 3
BLOCKS = (
    "conv",
    "inverted_residual",
    "basic_residual",
    "pool",
    "pointwise",
    "depthwise",
    "squeeze_excite",  # MobileNetV3 / EfficientNet's MBConv: SE gate, hard-swish or SiLU, 3-7 px depthwise
    "shuffle",  # ShuffleNetV2's unit: split, branch, concat, channel shuffle (run-time shapes)
)
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.LeakyReLU, nn.Sigmoid, nn.SiLU)


@dataclass(frozen=True)
class CalibrationModel:
    name: str
    family: str  # "zoo" (a built-in model under a random plan), "random" or "mlp"
    data: bytes  # ONNX
    index: int = -1  # its place in the generated sequence (-1: not generated)


class _Residual(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _act(rng: random.Random) -> nn.Module:
    return rng.choice(_ACTIVATIONS)()


def _conv(c_in: int, c_out: int, k: int, stride: int, groups: int, act: nn.Module | None) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    return [*layers, act] if act is not None else layers


def random_network(
    rng: random.Random, weights: Mapping[str, float] | None = None
) -> tuple[nn.Module, Tensor]:
    """A random CNN of mobile-model blocks (or, one time in six, an MLP) and its example input."""
    if rng.random() < 1 / 6:
        widths = [rng.choice([32, 64, 128, 256, 512, 1024]) for _ in range(rng.randint(1, 4))]
        features = rng.choice([16, 64, 128, 256, 784])
        mlp: list[nn.Module] = []
        for a, b in zip([features, *widths], widths, strict=False):
            mlp += [nn.Linear(a, b), _act(rng)]
        mlp.append(nn.Linear(widths[-1], 10))
        return nn.Sequential(*mlp).eval(), torch.randn(2, features)
    input_size = size = rng.choice([8, 16, 24, 32, 48, 64, 96, 128])
    channels = c = rng.choice([1, 3, 3])
    width = rng.choice([8, 16, 24, 32, 48, 64])
    stem_stride = rng.choice([1, 2])
    layers: list[nn.Module] = _conv(c, width, rng.choice([3, 3, 5, 7]), stem_stride, 1, _act(rng))
    size = (size + 1) // 2 if stem_stride == 2 else size
    if size >= 16 and rng.random() < 0.25:  # a max-pool stem (ResNet, ShuffleNet)
        layers.append(nn.MaxPool2d(3, stride=2, padding=1))
        size = (size + 1) // 2
    c = width
    names = list(BLOCKS)
    probabilities = [float((weights or {}).get(name, 1.0)) for name in names]
    for _ in range(rng.randint(1, 7)):
        block = rng.choices(names, weights=probabilities)[0]
        stride = 2 if size >= 8 and rng.random() < 0.35 else 1
        out = min(512, max(8, int(c * rng.choice([1, 1, 1.5, 2]))))
        k = rng.choice([1, 3, 3, 5]) if block == "conv" else rng.choice([3, 3, 5, 7])
        if block == "conv":
            layers += _conv(c, out, k, stride, 1, _act(rng))
        elif block == "pointwise":
            layers += _conv(c, out, 1, 1, 1, _act(rng) if rng.random() < 0.7 else None)
            stride = 1
        elif block == "depthwise":
            layers += _conv(c, c, k, stride, c, _act(rng))
            out = c
        elif block == "inverted_residual":
            hidden = min(MAX_HIDDEN, c * rng.choice([2, 4, 6]))
            body = nn.Sequential(
                *_conv(c, hidden, 1, 1, 1, _act(rng)),
                *_conv(hidden, hidden, k, stride, hidden, _act(rng)),
                *_conv(hidden, out if stride == 2 else c, 1, 1, 1, None),
            )
            layers.append(_Residual(body) if stride == 1 else body)
            out = c if stride == 1 else out
        elif block == "squeeze_excite":
            out = out if stride == 2 else rng.choice([c, out])
            layers.append(
                MBConv(
                    c,
                    out,
                    rng.choice([3, 5, 5, 7]),
                    stride,
                    max(1, min(rng.choice([3, 4, 6]), MAX_HIDDEN // c)),
                    hard=rng.random() < 0.6,
                )
            )
        elif block == "shuffle":
            if c % 2:  # the unit splits its channels in two
                continue
            out = c if stride == 1 else out + out % 2
            layers.append(ShuffleUnit(c, out, stride))
        elif block == "basic_residual":
            body = nn.Sequential(*_conv(c, c, 3, 1, 1, nn.ReLU()), *_conv(c, c, 3, 1, 1, None))
            layers += [_Residual(body), nn.ReLU()]
            out, stride = c, 1
        else:  # pool
            if size < 4:
                continue
            pool_k = rng.choice([2, 3])
            pool = nn.MaxPool2d if rng.random() < 0.6 else nn.AvgPool2d
            layers.append(pool(pool_k, stride=2, padding=pool_k // 2, ceil_mode=False))
            size = (size + 2 * (pool_k // 2) - pool_k) // 2 + 1
            continue
        size = (size + stride - 1) // stride if stride == 2 else size
        c = out
    head: list[nn.Module]
    if rng.random() < 0.8 or size > 8:
        head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, rng.choice([10, 100, 1000]))]
    else:
        head = [nn.Flatten(), nn.Linear(c * size * size, 10)]
    model = nn.Sequential(*layers, *head).eval()
    return model, torch.randn(2, channels, input_size, input_size)


def random_plan(model: nn.Module, example: Tensor, rng: random.Random) -> CompressionPlan:
    """A random valid plan, drawn from the same space the search samples (`plan_space`)."""
    space = build_space(model, example)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=rng.randrange(2**31)))
    trial = study.ask()
    suggest(trial, space)
    return plan_from_params(trial.params, space)


def precision_plan(model: nn.Module, example: Tensor, precision: str) -> CompressionPlan:
    """Every weighted layer quantized to `precision` ("int8", "int8_weights", "fp16")."""
    layers = [layer.name for layer in build_space(model, example).layers]
    return CompressionPlan.from_mapping({name: [Step.of("quantize", precision=precision)] for name in layers})


class ModelCache(Protocol):
    """Where generated models are kept by `model_key` (a calibration's journal)."""

    def get(self, key: str) -> CalibrationModel | None: ...

    def put(self, key: str, model: CalibrationModel) -> None: ...


def calibration_models(
    count: int,
    seed: int,
    *,
    weights: Mapping[str, float] | None = None,
    start: int = 0,
    cache: ModelCache | None = None,
    skipped: Callable[[str], None] | None = None,
) -> Iterator[CalibrationModel]:
    """`count` varied models from index `start` on: a third the built-in models under random
    plans, the rest random networks (one in three int8, one in twenty fp16). Each index draws
    from a generator of its own (`model_key`), so any one model can be generated, or read back
    from `cache` (a calibration's journal), without the others. A model that does not build (a
    plan the space should not have proposed, an export that fails) is reported to `skipped` in
    one line and the next index is drawn in its place: a calibration never dies of one model."""
    made = 0
    for index in range(start, start + MAX_DRAWS_PER_MODEL * max(1, count)):
        if made >= count:
            return
        key = model_key(seed, index, weights)
        found = cache.get(key) if cache is not None else None
        if found is None:
            try:
                found = calibration_model(index, seed, weights)
            except Exception as exc:  # a model that does not build: skipped, as a search skips a failed trial
                if skipped is not None:
                    skipped(f"generated model {index} skipped, it does not build: {first_line(exc)}")
                continue
            if cache is not None:
                cache.put(key, found)
        made += 1
        yield found


def model_key(seed: int, index: int, weights: Mapping[str, float] | None) -> str:
    """What decides a generated model: the seed, its index and the block weights it was drawn with."""
    mix = ",".join(f"{name}={weights[name]:.6g}" for name in sorted(weights)) if weights else "uniform"
    return f"{seed}:{index}:{mix}"


def calibration_model(index: int, seed: int, weights: Mapping[str, float] | None = None) -> CalibrationModel:
    """Model `index` of the sequence of `seed` drawn with `weights` (see `calibration_models`)."""
    key = model_key(seed, index, weights)
    rng = random.Random(key)
    torch.manual_seed(int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little"))
    if index % 3 == 0:
        zoo = _zoo()
        task = zoo[(index // 3) % len(zoo)]
        model = task.build_model().eval()
        example = task.example_input(2)
        plan = random_plan(model, example, rng)
        name, family = f"{task.name}{index}:{plan.hash}", "zoo"
        model = compress(model, plan, example)
    else:
        model, example = random_network(rng, weights)
        family = "mlp" if example.dim() == 2 else "random"
        draw = rng.random()
        precision = "int8" if draw < 0.33 else "fp16" if draw < 0.38 else "fp32"
        plan = precision_plan(model, example, precision) if precision != "fp32" else CompressionPlan()
        name = f"{family}{index}:{precision}"
    batches_rng = np.random.default_rng(rng.randrange(2**32))
    batches = [batches_rng.standard_normal((8, *example.shape[1:])).astype(np.float32) for _ in range(2)]
    return CalibrationModel(name, family, export_onnx(model, example, plan=plan, calibration=batches), index)


@functools.cache
def _zoo() -> tuple[Task, ...]:
    """The built-in tasks whose models, under random plans, are a third of the generated ones."""
    return tuple(load_task(name) for name in ("digits", "mnist1d", "mobilenet_digits"))
