"""Emulator accuracy and speed against the issue's targets, in one run on this machine.

Run: `.venv/bin/python benchmarks/farm_bench.py` (about 35 minutes on 2 cores; nothing else
should run meanwhile: the host's measurements are the ground truth). Prints tables and writes
benchmarks/results/farm_bench.json. Side by side, from the same measurements:

1. Host calibration (at most 300 calibration models): on held-out models, the learned emulator,
   the fitted roofline and a FLOPs-proportional predictor; the noise floor (held-out models
   measured twice).
2. Architectures calibration never generated (MobileNetV1/V2 at other widths and resolutions,
   VGG stacks, SqueezeNet fire modules with Concat, ResNet bottlenecks, DenseNet-style concat),
   measured on the host and predicted by the profile step 1 wrote.
3. Few-shot: this CPU with 2 intra-op threads treated as a new device; the learned model of
   step 1 transferred from `--shots` measurements, checked on held-out models.
4. Emulator throughput on repeated (cached) and new graphs, each timed for `--speed-seconds`
   per model and profile (a quick run, or a smoke test, passes a fraction of a second).
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from adacomp.device_farm import OnnxModel, open_farm
from adacomp.device_farm.cost_model import accuracy_report, predict
from adacomp.device_farm.emulator import clear_caches, predict_model
from adacomp.device_farm.identity import host_identity
from adacomp.device_farm.profiles import builtin_profile_names, load_profile
from adacomp.platform.ops.calibrate import (
    CalibrationReport,
    calibration_settings,
    measure_models,
    run_calibration,
)
from adacomp.platform.ops.calibration_models import CalibrationModel
from adacomp.platform.ops.calibration_progress import Books
from adacomp.platform.ops.mobile_blocks import MBConv, ShuffleUnit
from adacomp.platform.ops.reference_models import mobilenet_v1
from adacomp.platform.table import format_table
from adacomp.search_spaces import export_onnx
from adacomp.tasks import load_task
from adacomp.tasks.mobile import MobileNetV2

OUT = Path(__file__).parent / "results" / "farm_bench.json"


# --- architectures calibration never generates -------------------------------------------------
class _Fire(nn.Module):
    """SqueezeNet's fire module: squeeze 1x1, then 1x1 and 3x3 expands concatenated."""

    def __init__(self, c_in: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(c_in, squeeze, 1), nn.ReLU())
        self.e1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU())
        self.e3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, padding=1), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        s = self.squeeze(x)
        return torch.cat([self.e1(s), self.e3(s)], dim=1)


class _Bottleneck(nn.Module):
    def __init__(self, c: int, stride: int) -> None:
        super().__init__()
        mid = c // 4
        self.body = nn.Sequential(
            nn.Conv2d(c, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(),
            nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(),
            nn.Conv2d(mid, c, 1, bias=False),
            nn.BatchNorm2d(c),
        )
        self.skip = nn.AvgPool2d(2) if stride == 2 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class _DenseLayer(nn.Module):
    def __init__(self, c: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, growth, 3, padding=1, bias=False)
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.body(x)], dim=1)


UNSEEN_FAMILIES = (
    "mobilenet_v2",
    "mobilenet_v1",
    "vgg",
    "squeezenet",
    "resnet",
    "densenet",
    "shufflenet_v2",
    "mobilenet_v3",
    "efficientnet",
)


def _mobile_v3_like(rng: random.Random, hard: bool) -> list[nn.Module]:
    """A stem and MBConv stages with squeeze-and-excitation (hard-swish: MobileNetV3; SiLU and a
    sigmoid gate: EfficientNet)."""
    c = rng.choice([16, 24])
    act: type[nn.Module] = nn.Hardswish if hard else nn.SiLU
    layers: list[nn.Module] = [nn.Conv2d(3, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), act()]
    for out, stride in [(24, 2), (24, 1), (40, 2), (40, 1), (80, 2)][: rng.randint(3, 5)]:
        layers.append(MBConv(c, out, rng.choice([3, 5]), stride, rng.choice([3, 4, 6]), hard=hard))
        c = out
    return [*layers, nn.Conv2d(c, 4 * c, 1), act()]


def _shufflenet_v2(rng: random.Random) -> list[nn.Module]:
    """A max-pool stem and ShuffleNetV2 stages (one down-sampling unit, then split units)."""
    width = rng.choice([24, 48, 96])
    layers: list[nn.Module] = [
        nn.Conv2d(3, 24, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(24),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
    ]
    c = 24
    for stage in range(rng.randint(2, 3)):
        out = width * 2**stage
        layers.append(ShuffleUnit(c, out, 2))
        layers += [ShuffleUnit(out, out, 1) for _ in range(rng.randint(1, 3))]
        c = out
    return layers


def unseen_network(rng: random.Random) -> tuple[str, nn.Module, Tensor]:
    family = rng.choice(UNSEEN_FAMILIES)
    size = rng.choice([64, 96, 128, 160])
    if family == "mobilenet_v2":
        width = rng.choice([0.35, 0.5, 0.75])
        return f"{family}x{width}@{size}", MobileNetV2(1000, width), torch.randn(1, 3, size, size)
    if family == "mobilenet_v1":
        return f"{family}@{size}", mobilenet_v1(), torch.randn(1, 3, size, size)
    layers: list[nn.Module] = []
    c = 3
    if family in ("shufflenet_v2", "mobilenet_v3", "efficientnet"):
        body = (
            _shufflenet_v2(rng)
            if family == "shufflenet_v2"
            else _mobile_v3_like(rng, family == "mobilenet_v3")
        )
        features = nn.Sequential(*body)
        with torch.no_grad():
            c = int(features(torch.zeros(1, 3, size, size)).shape[1])
        head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 1000)]
        return f"{family}@{size}", nn.Sequential(features, *head), torch.randn(1, 3, size, size)
    if family == "vgg":
        for width in [rng.choice([16, 32, 64]) * 2**i for i in range(rng.randint(2, 4))]:
            for _ in range(rng.randint(1, 2)):
                layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU()]
                c = width
            layers.append(nn.MaxPool2d(2))
    elif family == "squeezenet":
        layers += [nn.Conv2d(3, 64, 3, stride=2), nn.ReLU(), nn.MaxPool2d(3, 2)]
        c = 64
        for squeeze in [16, 16, 32, 32, 48][: rng.randint(2, 5)]:
            layers.append(_Fire(c, squeeze, 4 * squeeze))
            c = 8 * squeeze
    elif family == "resnet":
        c = rng.choice([32, 64])
        layers += [
            nn.Conv2d(3, c, 7, stride=2, padding=3),
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        ]
        for i in range(rng.randint(2, 5)):
            layers.append(_Bottleneck(c, 2 if i % 2 else 1))
    else:  # densenet
        c = 32
        layers += [nn.Conv2d(3, c, 3, stride=2, padding=1)]
        for _ in range(rng.randint(3, 6)):
            layers.append(_DenseLayer(c, 12))
            c += 12
        layers.append(nn.AvgPool2d(2))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 1000)]
    return f"{family}@{size}", nn.Sequential(*layers), torch.randn(1, 3, size, size)


def unseen_models(count: int, seed: int) -> list[OnnxModel]:
    rng = random.Random(seed)
    torch.manual_seed(seed)
    models = []
    for i in range(count):
        name, model, example = unseen_network(rng)
        models.append(OnnxModel(export_onnx(model.eval(), example), f"{name}#{i}"))
    return models


# --- the sections -------------------------------------------------------------------------------
def _books() -> Books:
    """Every calibration line on stderr, one per measurement included (a benchmark's log)."""
    say = functools.partial(print, file=sys.stderr, flush=True)
    return Books(say=say, detail=say)


def calibrate(args: argparse.Namespace, out_dir: Path) -> CalibrationReport:
    return run_calibration(
        device="host",
        config=None,
        models=args.calibration_models,
        held_out=args.held_out,
        rounds=args.rounds,
        out_dir=out_dir,
        store=None,
        seed=args.seed,
        resume=args.resume,
        books=_books(),
    )


def unseen(args: argparse.Namespace, report: CalibrationReport) -> dict[str, Any]:
    """Measured with calibration's own protocol (passes, fastest confirmed), predicted by the
    profile calibration wrote, next to its fitted roofline and FLOPs line."""
    profile = load_profile(report.profile_path)
    roofline = profile.model_copy(update={"kernel_model": None})
    a, b = report.flops_fit
    models = [CalibrationModel(m.name, "unseen", m.data) for m in unseen_models(args.unseen, args.seed + 17)]
    farm = open_farm(None, store=None)
    measured = measure_models(
        farm, "host", models, profile, calibration_settings(1), _books(), kernels=False, passes=2
    )
    data = {item.name: item.data for item in models}  # a model never measured is left out
    rows: list[dict[str, Any]] = [
        {
            "model": m.name,
            "measured_ms": m.latency_ms,
            "emulated_ms": predict_model(OnnxModel(data[m.name], m.name), profile).latency_ms,
            "roofline_ms": predict(m.summary, roofline).latency_ms,
            "flops_ms": a * m.summary.macs + b,
        }
        for m in measured
    ]
    measured_ms = [float(r["measured_ms"]) for r in rows]
    return {
        "emulator": accuracy_report([float(r["emulated_ms"]) for r in rows], measured_ms),
        "roofline": accuracy_report([float(r["roofline_ms"]) for r in rows], measured_ms),
        "flops_baseline": accuracy_report([float(r["flops_ms"]) for r in rows], measured_ms),
        "rows": rows,
    }


def few_shot(args: argparse.Namespace, report: CalibrationReport, out_dir: Path) -> CalibrationReport:
    return run_calibration(
        device="host",
        config=None,
        models=max(8, args.shots),
        threads=2,
        transfer_from=report.profile_path,
        shots=args.shots,
        held_out=args.fewshot_held_out,
        out_dir=out_dir / "two_threads",
        store=None,
        seed=args.seed + 101,
        resume=args.resume,
        books=_books(),
    )


def emulator_speed(profile_path: Path, seconds: float = 2.0) -> list[dict[str, Any]]:
    """Predictions per second of each model on each profile: new graphs (caches cleared before
    each) for `seconds`, then the same graph again (cached) for half as long; at least one
    prediction (new) and one batch of 100 (cached) each, however short `seconds` is."""
    zoo = {}
    for name in ("digits", "mnist1d", "mobilenet_digits"):
        task = load_task(name)
        zoo[name] = export_onnx(task.build_model().eval(), task.example_input(2))
    profiles = {"pixel4": load_profile("pixel4"), "host (calibrated)": load_profile(profile_path)}
    rows = []
    for name, data in zoo.items():
        for label, profile in profiles.items():
            new_count, started = 0, time.perf_counter()
            while new_count == 0 or time.perf_counter() - started < seconds:
                clear_caches()
                predict_model(OnnxModel(data, name), profile)
                new_count += 1
            new_rate = new_count / (time.perf_counter() - started)
            model = OnnxModel(data, name)
            predict_model(model, profile)
            cached_count, started = 0, time.perf_counter()
            while cached_count == 0 or time.perf_counter() - started < seconds / 2:
                for _ in range(100):
                    predict_model(model, profile)
                cached_count += 100
            cached_rate = cached_count / (time.perf_counter() - started)
            rows.append({"model": name, "profile": label, "new_per_s": new_rate, "cached_per_s": cached_rate})
    return rows


def per_family(
    rows: Sequence[Mapping[str, Any]], family: Callable[[Mapping[str, Any]], str]
) -> dict[str, Any]:
    """The emulator's accuracy over each family's rows (the issue's target holds per family)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(family(row), []).append(row)
    return {
        name: accuracy_report(
            [float(r["emulated_ms"]) for r in group], [float(r["measured_ms"]) for r in group]
        )
        for name, group in groups.items()
    }


def _metrics(found: dict[str, float]) -> list[str]:
    return [
        f"{100 * found['within_10']:.1f} %",
        f"{100 * found['within_20']:.1f} %",
        f"{found['kendall_tau']:.3f}",
        f"{100 * found['mape']:.1f} %",
    ]


def _report_json(report: CalibrationReport) -> dict[str, Any]:
    return {
        "mode": report.mode,
        "models": report.models,
        "held_out": report.held_out,
        "left_out": {"models": report.left_out[0], "held_out": report.left_out[1]},
        "emulator": report.emulator,
        "roofline": report.roofline,
        "flops_baseline": report.flops_baseline,
        "noise_floor": report.noise_floor,
        "rounds": report.rounds,
        "rows": report.rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration-models", type=int, default=200, help="fitted on (at most 300)")
    parser.add_argument("--held-out", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--unseen", type=int, default=30, help="architectures calibration never generates")
    parser.add_argument("--shots", type=int, default=10, help="measurements of the few-shot device")
    parser.add_argument("--fewshot-held-out", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--profile-out", type=Path, help="keep the calibrated profiles here (default: discarded)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the calibrations whose journals are in --profile-out (a run that was stopped)",
    )
    parser.add_argument(
        "--speed-seconds",
        type=float,
        default=2.0,
        help="emulator throughput: seconds timing new graphs per model and profile (cached: half)",
    )
    args = parser.parse_args(argv)
    command = sys.argv[1:] if argv is None else argv
    results: dict[str, Any] = {
        "meta": {
            "command": " ".join(["python benchmarks/farm_bench.py", *command]),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "profiles": builtin_profile_names(),
            # what the host figures are of: never compare them across machines (identity.py)
            "identity": {**asdict(host_identity()), "describe": host_identity().describe()},
        }
    }
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.profile_out or Path(tmp)
        started = time.perf_counter()
        report = calibrate(args, out_dir)
        results["calibration"] = {**_report_json(report), "seconds": round(time.perf_counter() - started, 1)}
        results["unseen"] = unseen(args, report)
        results["per_family"] = {
            "held_out": per_family(report.rows, lambda row: str(row["family"])),
            "unseen": per_family(results["unseen"]["rows"], lambda row: str(row["model"]).split("@")[0]),
        }
        shots = few_shot(args, report, out_dir)
        results["few_shot"] = _report_json(shots)
        results["emulator_speed"] = emulator_speed(report.profile_path, args.speed_seconds)
    rows = []
    for label, found in (
        ("host held-out", results["calibration"]),
        ("host unseen architectures", results["unseen"]),
        ("few-shot: 2 threads", results["few_shot"]),
    ):
        for predictor in ("emulator", "roofline", "flops_baseline"):
            rows.append([label, predictor, *_metrics(found[predictor])])
    print(format_table(["set", "predictor", "within 10 %", "within 20 %", "Kendall tau", "MAPE"], rows))
    noise = results["calibration"]["noise_floor"]
    print(
        f"noise floor (held-out models measured twice): within +-10 % {100 * noise['within_10']:.1f} %, "
        f"median gap {100 * noise['median_gap']:.1f} %, Kendall tau {noise['kendall_tau']:.3f}"
    )
    print(
        f"calibration: {report.models} models fitted, {report.held_out} held out, "
        f"{results['calibration']['seconds']:.0f} s; few-shot: {shots.models} measurements, "
        f"{shots.held_out} held out; host: {host_identity().describe()}"
    )
    family_rows = [
        [f"{group}: {family}", str(int(found["n"])), *_metrics(found)]
        for group, families in results["per_family"].items()
        for family, found in sorted(families.items())
    ]
    print()
    print(
        format_table(
            ["family (emulator)", "models", "within 10 %", "within 20 %", "Kendall tau", "MAPE"], family_rows
        )
    )
    print()
    print(
        format_table(
            ["model", "profile", "new graphs / s", "cached / s"],
            [
                [r["model"], r["profile"], f"{r['new_per_s']:.0f}", f"{r['cached_per_s']:.0f}"]
                for r in results["emulator_speed"]
            ],
        )
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"written {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
