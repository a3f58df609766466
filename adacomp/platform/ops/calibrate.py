"""`adacomp farm calibrate`: fit an emulator profile to a real device, and say how good it is.

Generates a varied set of models (the built-in models under random compression plans, plus
random conv/linear stacks), measures them on the device, fits the cost model's per-op-kind
efficiency factors on three quarters of them and reports, on the held-out quarter, the share
of predictions within +-10 % and +-20 % of measured and Kendall's tau, next to a
FLOPs-proportional predictor fitted on the same data (the baseline the emulator must beat).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from torch import nn

from adacomp.device_farm import MeasureSettings, OnnxModel, open_farm
from adacomp.device_farm.cost_model import accuracy_report, fit_efficiency, flops_baseline_fit, predict
from adacomp.device_farm.graph import analyze
from adacomp.device_farm.profiles import load_profile, save_profile
from adacomp.platform.strategies.plan_space import plan_from_params, suggest
from adacomp.platform.table import format_table
from adacomp.search_spaces import CompressionPlan, build_space, compress, export_onnx
from adacomp.tasks import load_task


@dataclass(frozen=True)
class CalibrationReport:
    device: str
    models: int
    held_out: int
    emulator: dict[str, float]
    flops_baseline: dict[str, float]
    profile_path: Path
    rows: list[dict[str, Any]]

    def table(self) -> str:
        keys = [
            ("within_10", "within +-10 %"),
            ("within_20", "within +-20 %"),
            ("kendall_tau", "Kendall's tau"),
            ("mape", "MAPE"),
        ]
        rows = [
            [label, _fmt(key, self.emulator[key]), _fmt(key, self.flops_baseline[key])]
            for key, label in keys
            if key in self.emulator
        ]
        fitted = self.models - self.held_out
        title = f"calibration on {self.device!r}: fitted on {fitted} models, held out {self.held_out}"
        return title + "\n" + format_table(["held-out metric", "emulator", "FLOPs-proportional"], rows)


def _fmt(key: str, value: float) -> str:
    return f"{value:.3f}" if key == "kendall_tau" else f"{100 * value:.1f} %"


def random_plan(model: nn.Module, example: torch.Tensor, rng: random.Random) -> CompressionPlan:
    """A random valid plan, drawn from the same space the search samples (`plan_space`)."""
    space = build_space(model, example)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=rng.randrange(2**31)))
    trial = study.ask()
    suggest(trial, space)
    return plan_from_params(trial.params, space)


def random_stack(rng: random.Random) -> tuple[nn.Module, torch.Tensor]:
    """A random conv stack with a linear head, or an MLP: shapes nothing in the zoo has."""
    if rng.random() < 0.25:
        widths = [rng.choice([32, 64, 128, 256, 512]) for _ in range(rng.randint(2, 4))]
        layers: list[nn.Module] = []
        for a, b in zip([64, *widths], widths, strict=False):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], 10))
        return nn.Sequential(*layers).eval(), torch.randn(2, 64)
    size = rng.choice([16, 24, 32, 48, 64])
    channels = rng.choice([1, 3])
    layers = []
    c = channels
    for _ in range(rng.randint(2, 5)):
        out = rng.choice([8, 16, 32, 48, 64, 96])
        k = rng.choice([1, 3, 5])
        stride = rng.choice([1, 1, 2]) if size >= 8 else 1
        groups = c if (rng.random() < 0.25 and out % c == 0 and c > 1) else 1
        layers += [
            nn.Conv2d(c, out, k, stride=stride, padding=k // 2, groups=groups),
            nn.BatchNorm2d(out),
            nn.ReLU(),
        ]
        size = (size + stride - 1) // stride
        c = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10)]
    return nn.Sequential(*layers).eval(), torch.randn(2, channels, size, size)


def calibration_models(count: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """`count` varied ONNX models: zoo models under random plans and random stacks, alternating."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    zoo = [load_task(name) for name in ("digits", "mnist1d", "mobilenet_digits")]
    calibration_rng = np.random.default_rng(seed)
    for i in range(count):
        if i % 2 == 0:
            task = zoo[(i // 2) % len(zoo)]
            model = task.build_model().eval()
            example = task.example_input(2)
            plan = random_plan(model, example, rng)
            name = f"{task.name}:{plan.hash}"
            model = compress(model, plan, example)
        else:
            model, example = random_stack(rng)
            plan = CompressionPlan()
            name = f"stack{i}"
        batches = [
            calibration_rng.standard_normal((8, *example.shape[1:])).astype(np.float32) for _ in range(2)
        ]
        yield name, export_onnx(model, example, plan=plan, calibration=batches)


def run_calibration(
    *,
    device: str,
    config: Path | None,
    models: int,
    out_dir: Path,
    store: Path | None,
    seed: int = 0,
    settings: MeasureSettings | None = None,
    log: Callable[[str], None] = print,
) -> CalibrationReport:
    if models < 8:
        from adacomp.errors import AdacompError

        raise AdacompError(
            f"models: calibration needs at least 8 models (6 to fit, 2 to check), got {models}"
        )
    farm = open_farm(config, store=store)
    farm.device(device)
    settings = settings or MeasureSettings(warmup_runs=3, min_runs=15, max_runs=100, target_cv=0.03)
    samples = []
    for i, (name, data) in enumerate(calibration_models(models, seed)):
        model = OnnxModel(data, name)
        measured = farm.measure(model, device, settings)
        summary = analyze(model.proto(), batch_size=settings.batch_size)
        samples.append((name, summary, measured.latency.median_ms))
        log(f"[{i + 1}/{models}] {name}: {measured.latency.median_ms:.3f} ms ({summary.macs} MACs)")
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    held = set(order[: max(2, len(order) // 4)])
    fit = [(s, ms) for i, (_, s, ms) in enumerate(samples) if i not in held]
    check = [(n, s, ms) for i, (n, s, ms) in enumerate(samples) if i in held]
    profile = fit_efficiency(fit, load_profile("host"))
    profile = profile.model_copy(update={"name": device, "device_class": farm.devices[device].device_class})
    a, b = flops_baseline_fit([(s, ms) for s, ms in fit])
    measured_ms = [ms for _, _, ms in check]
    emulated = [predict(s, profile).latency_ms for _, s, _ in check]
    flops = [a * s.macs + b for _, s, _ in check]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{device}.yaml"
    save_profile(profile, path)
    rows = [
        {"model": n, "measured_ms": m, "emulated_ms": e, "flops_ms": f}
        for (n, _, m), e, f in zip(check, emulated, flops, strict=True)
    ]
    return CalibrationReport(
        device=device,
        models=len(samples),
        held_out=len(check),
        emulator=accuracy_report(emulated, measured_ms),
        flops_baseline=accuracy_report(flops, measured_ms),
        profile_path=path,
        rows=rows,
    )
