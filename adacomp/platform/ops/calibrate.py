"""`adacomp farm calibrate`: fit an emulator profile to a real device, and say how good it is.

Full calibration (a device that reports per-kernel times: this host): generated models
(``calibration_models.py``) are measured on a reserved core, whole-model latency and ORT's
per-kernel profile; the learned kernel model is fitted in rounds, each round adding models rich
in the kernel kinds the previous fit predicted worst (nn-Meter's adaptive sampling); a quarter
of the models, drawn before any fitting, is held out. The report puts the learned emulator
next to the fitted roofline and a FLOPs-proportional predictor, and next to the noise floor:
the held-out models measured a second time. No accuracy tighter than that floor is claimed.

Few-shot calibration (`transfer_from`): a device measured only `shots` times gets the source
profile's learned kernel model with its four whole-model scales refitted (HELP's idea).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from adacomp.device_farm import DeviceError, MeasureSettings, OnnxModel, open_farm
from adacomp.device_farm.cores import available_cores, pin_process, reserve_cores
from adacomp.device_farm.cost_model import accuracy_report, fit_efficiency, flops_baseline_fit, predict
from adacomp.device_farm.devices._base import ModelRefused
from adacomp.device_farm.devices.host import HostDevice
from adacomp.device_farm.emulator import summarize
from adacomp.device_farm.farm import Farm
from adacomp.device_farm.graph import GraphSummary
from adacomp.device_farm.kernel_model import (
    KernelModel,
    ModelSample,
    fit_kernel_model,
    load_kernel_model,
    refit_scales,
    save_kernel_model,
)
from adacomp.device_farm.profiles import DeviceProfile, load_profile, save_profile
from adacomp.errors import AdacompError
from adacomp.platform.ops.calibration_journal import CalibrationJournal, Failed, Outcome, Pass
from adacomp.platform.ops.calibration_models import BLOCKS, CalibrationModel, calibration_models
from adacomp.platform.ops.calibration_progress import Books
from adacomp.platform.table import format_table

MIN_MODELS = 8
AGREE = 0.04  # the two fastest passes of a model agree within this; else it is measured again
MAX_PASS_FACTOR = 3
MAX_MODELS = 2000
# Kernel kinds -> the generator blocks rich in them (adaptive sampling's lever).
_BLOCKS_OF_KIND = {
    "conv": ("conv", "basic_residual"),
    "depthwise_conv": ("depthwise", "inverted_residual", "squeeze_excite", "shuffle"),
    "gemm": ("pointwise",),
    "pool": ("pool", "squeeze_excite"),
    "elementwise": ("inverted_residual", "basic_residual", "squeeze_excite"),
    "reshape": ("shuffle",),
}


@dataclass(frozen=True)
class Measured:
    name: str
    family: str
    summary: GraphSummary
    latency_ms: float  # the fastest pass
    kernel_ms: dict[str, float] | None
    passes_ms: tuple[float, ...] = ()

    def sample(self) -> ModelSample:
        return ModelSample(self.summary, self.latency_ms, self.kernel_ms)


@dataclass(frozen=True)
class CalibrationReport:
    device: str
    mode: str  # "full", "few-shot" or "roofline" (a device without per-kernel times)
    models: int  # measured to fit (all rounds)
    held_out: int
    emulator: dict[str, float]
    roofline: dict[str, float]
    flops_baseline: dict[str, float]
    noise_floor: dict[str, float]
    profile_path: Path
    rows: list[dict[str, Any]]
    flops_fit: tuple[float, float] = (0.0, 0.0)  # (ms per MAC, ms) fitted on the calibration models
    rounds: list[dict[str, Any]] = field(default_factory=list)
    # Asked for but never measured without noise, so left out (the log names them): to fit, to check.
    left_out: tuple[int, int] = (0, 0)

    def table(self) -> str:
        keys = [
            ("within_10", "within +-10 %"),
            ("within_20", "within +-20 %"),
            ("kendall_tau", "Kendall's tau"),
            ("mape", "MAPE"),
        ]
        columns = [
            ("emulator", self.emulator),
            ("fitted roofline", self.roofline),
            ("FLOPs-proportional", self.flops_baseline),
        ]
        rows = [
            [label, *(_fmt(key, found[key], self.noise_floor) for _, found in columns)] for key, label in keys
        ]
        if self.noise_floor:
            rows.append(["noise floor", _floor(self.noise_floor), "same models measured twice", ""])
        title = (
            f"{self.mode} calibration of {self.device!r}: fitted on {self.models} models, "
            f"checked on {self.held_out} held out"
        )
        return title + "\n" + format_table(["held-out metric", *(name for name, _ in columns)], rows)


def _floor(noise: dict[str, float]) -> str:
    within, gap = 100 * noise["within_10"], 100 * noise["median_gap"]
    return f"repeats within +-10 %: {within:.1f} %, median gap {gap:.1f} %"


def _fmt(key: str, value: float, noise: dict[str, float]) -> str:
    """A metric, capped at what the noise floor allows: a prediction cannot agree with the device
    more often than the device agrees with itself."""
    if key == "kendall_tau":
        if noise and value > noise["kendall_tau"]:
            return f"~{noise['kendall_tau']:.3f} (noise floor)"
        return f"{value:.3f}"
    if key in ("within_10", "within_20") and noise and value > noise[key]:
        return f"~{100 * noise[key]:.1f} % (noise floor)"
    if key == "mape" and noise and value < noise["mape"]:
        return f"~{100 * noise['mape']:.1f} % (noise floor)"
    return f"{100 * value:.1f} %"


def calibration_settings(threads: int) -> MeasureSettings:
    """Warm-up, repeated medians, and a core of its own when the machine has one to spare."""
    cores = available_cores()
    reserved = reserve_cores(cores, threads).measurement if len(cores) > threads else None
    return MeasureSettings(
        warmup_runs=5, min_runs=20, max_runs=200, target_cv=0.03, intra_op_threads=threads, cores=reserved
    )


def measure_models(
    farm: Farm,
    device: str,
    models: Iterable[CalibrationModel],
    profile: DeviceProfile,
    settings: MeasureSettings,
    books: Books,
    *,
    kernels: bool,
    passes: int = 2,
    label: str = "",
) -> list[Measured]:
    """Measure each model in separate passes over all of them (fresh: calibration never reuses a
    stored number) until its two fastest passes agree within `AGREE` (at most `MAX_PASS_FACTOR`
    x `passes` passes), and keep the fastest. On a shared machine a slow spell lasts seconds and
    slows a whole measurement (this repo's 2-core VM: the same MobileNetV2 at 0.66 or 1.07 ms in
    consecutive processes), so the speed that repeats is the fastest one seen twice. On this host
    each pass reports the 10th percentile of its timed runs and, when `kernels`, of each kernel's
    profiled runs; other devices report their median. Every pass goes to the journal as it is
    measured, and a pass the journal already holds (a resumed calibration) is not measured again;
    a model the device refuses is left out at once."""
    generated = list(models)
    part = label.strip() or "fit"
    latencies: list[list[float]] = [[] for _ in generated]
    kernel_times: list[dict[str, float]] = [{} for _ in generated]
    refused: set[int] = set()
    recorded = [books.journal.passes(part, item.name) if books.journal else [] for item in generated]
    summaries = [
        summarize(OnnxModel(item.data, item.name), profile, settings.batch_size) for item in generated
    ]
    for one_pass in range(MAX_PASS_FACTOR * passes):
        pending = [
            i
            for i in range(len(generated))
            if i not in refused and (one_pass < passes or not _agree(latencies[i]))
        ]
        if not pending:
            break
        if one_pass >= passes:  # the bar planned `passes` passes; settling noisy models adds steps
            books.progress.plan(len(pending))
        phase = f"{label}pass {one_pass + 1}" + (f"/{passes}" if one_pass < passes else " (settling noise)")
        for i in pending:
            item = generated[i]
            outcome = recorded[i].pop(0) if recorded[i] else None
            if outcome is None:
                outcome = _measure_once(farm, device, OnnxModel(item.data, item.name), settings, kernels)
                if books.journal is not None:
                    books.journal.add_pass(part, item.name, outcome)
            books.progress.advance(phase)
            where = f"{label}[{i + 1}/{len(generated)}] pass {one_pass + 1}: {item.name}"
            if isinstance(outcome, Failed):  # too noisy this time: the next pass measures it again
                books.detail(f"{where}: {outcome.error}")
                if outcome.refused:
                    refused.add(i)
                    books.say(f"{label}{item.name} left out, the device cannot run it: {outcome.error}")
                continue
            latencies[i].append(outcome.low_ms)
            for name, ms in (outcome.kernel_ms or {}).items():
                kernel_times[i][name] = min(ms, kernel_times[i].get(name, ms))
            books.detail(f"{where}: {outcome.low_ms:.4f} ms, {summaries[i].macs} MACs")
    unmeasured = [item.name for i, item in enumerate(generated) if not latencies[i] and i not in refused]
    if not any(latencies):
        raise AdacompError(f"device {device!r} measured none of the {len(generated)} calibration models")
    if unmeasured:
        books.say(f"{label}left out, never measured without noise: {', '.join(unmeasured)}")
    return [
        Measured(item.name, item.family, summary, min(times), kernel_ms or None, tuple(times))
        for item, summary, times, kernel_ms in zip(generated, summaries, latencies, kernel_times, strict=True)
        if times
    ]


def _measure_once(
    farm: Farm, device: str, model: OnnxModel, settings: MeasureSettings, kernels: bool
) -> Outcome:
    """One pass of one model: this host's fastest-run latency and kernel times (its measurement
    kept in the store), another device's median; or why there is no number this time."""
    target = farm.devices[device]
    try:
        if isinstance(target, HostDevice):
            measurement, low_ms, kernel_ms = target.measure_kernels(model, settings, kernels=kernels)
            if farm.store is not None:
                farm.store.add(measurement)
            return Pass(low_ms, kernel_ms or None)
        return Pass(farm.measure(model, device, settings, fresh=True).latency.median_ms)
    except ModelRefused as exc:
        return Failed(str(exc), refused=True)
    except DeviceError as exc:
        return Failed(str(exc))


def _agree(times: Sequence[float]) -> bool:
    fastest = sorted(times)[:2]
    return len(fastest) == 2 and fastest[1] <= fastest[0] * (1 + AGREE)


def noise_floor(first: Sequence[float], second: Sequence[float]) -> dict[str, float]:
    """How well the device agrees with itself: the second measurement as a 'prediction' of the first."""
    report = accuracy_report(list(second), list(first))
    gaps = np.abs(np.asarray(second) - np.asarray(first)) / np.asarray(first)
    return {**report, "median_gap": float(np.median(gaps))}


def kind_errors(model: KernelModel, samples: Sequence[Measured], profile: DeviceProfile) -> dict[str, float]:
    """Median |log(predicted / measured)| per kernel kind over profiled kernels."""
    errors: dict[str, list[float]] = {}
    for sample in samples:
        if not sample.kernel_ms:
            continue
        ops = sample.summary.executed
        predicted = model.kernel_ms(ops, profile)
        for op, ms in zip(ops, predicted, strict=True):
            real = sample.kernel_ms.get(op.name)
            if real and real > 0:
                errors.setdefault(op.kind.value, []).append(abs(math.log(ms / real)))
    return {kind: float(np.median(values)) for kind, values in errors.items()}


def block_weights(errors: dict[str, float]) -> dict[str, float]:
    """Generator weights that favour blocks rich in the worst-predicted kinds."""
    weights = dict.fromkeys(BLOCKS, 1.0)
    worst = max(errors.values(), default=0.0) or 1.0
    for kind, error in errors.items():
        for block in _BLOCKS_OF_KIND.get(kind, ()):
            weights[block] += 4.0 * error / worst
    return weights


@dataclass(frozen=True)
class CalibrationOptions:
    """What decides which models a calibration generates and measures, and how (the journal's
    first line: a resume with other options is refused)."""

    device: str
    models: int
    seed: int = 0
    threads: int = 1
    rounds: int = 3
    transfer_from: str | None = None
    shots: int = 10
    held_out: int | None = None
    repeat: bool = True
    passes: int = 2

    @property
    def held(self) -> int:
        return self.held_out if self.held_out is not None else max(2, self.models // 4)

    def check(self) -> None:
        """Each option in range, or one line naming it."""
        if not MIN_MODELS <= self.models <= MAX_MODELS:
            raise AdacompError(
                f"models: calibration needs {MIN_MODELS} to {MAX_MODELS} models (6 to fit, 2 to check), "
                f"got {self.models}"
            )
        if self.transfer_from is not None and not 2 <= self.shots <= 1000:
            raise AdacompError(f"shots: few-shot calibration needs 2 to 1000 measurements, got {self.shots}")
        if not 1 <= self.threads <= 256:
            raise AdacompError(f"threads: expected 1 to 256 intra-op threads, got {self.threads}")
        if self.held_out is not None and not 2 <= self.held_out <= MAX_MODELS:
            raise AdacompError(
                f"held_out: expected 2 to {MAX_MODELS} models to check on, got {self.held_out}"
            )
        if not 1 <= self.passes <= 20:
            raise AdacompError(f"passes: expected 1 to 20 measurement passes, got {self.passes}")
        if not 1 <= self.rounds <= 20:
            raise AdacompError(f"rounds: expected 1 to 20 rounds of adaptive sampling, got {self.rounds}")


def run_calibration(
    *,
    device: str,
    config: Path | None,
    models: int,
    out_dir: Path,
    store: Path | None,
    seed: int = 0,
    threads: int = 1,
    rounds: int = 3,
    base: str | Path = "host",
    transfer_from: str | Path | None = None,
    shots: int = 10,
    held_out: int | None = None,
    repeat: bool = True,
    passes: int = 2,
    settings: MeasureSettings | None = None,
    resume: bool = False,
    books: Books | None = None,
) -> CalibrationReport:
    """Calibrate `device` (see the module docstring); with `resume`, continue the calibration
    whose journal is in `out_dir`, measuring only what it had not."""
    options = CalibrationOptions(
        device,
        models,
        seed,
        threads,
        rounds,
        str(transfer_from) if transfer_from is not None else None,
        shots,
        held_out,
        repeat,
        passes,
    )
    options.check()
    source = load_profile(transfer_from if transfer_from is not None else base)
    if transfer_from is not None and source.kernel_model is None:
        raise AdacompError(
            f"profile {str(transfer_from)!r} has no learned kernel model to transfer; "
            "calibrate a device fully first"
        )
    farm = open_farm(config, store=store)
    farm.device(device)
    settings = settings or calibration_settings(threads)
    journal = CalibrationJournal(
        out_dir,
        device,
        {**asdict(options), "base": str(base), "settings": settings.model_dump(mode="json")},
        resume=resume,
    )
    books = replace(books or Books(), journal=journal)
    if journal.measured:
        books.say(f"resuming {journal.path}: its {journal.measured} passes are not measured again")
    with _off_the_measurement_cores(settings):
        report = _Calibration(farm, options, source, settings, books).run(out_dir)
    if farm.store is not None:
        farm.store.compact()  # one file for the calibration's measurements, not one per pass
    return report


@contextlib.contextmanager
def _off_the_measurement_cores(settings: MeasureSettings) -> Iterator[None]:
    """Keep this process (exporting the next model) off the cores the timing worker is pinned to."""
    if not settings.cores or not hasattr(os, "sched_getaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    others = before - set(settings.cores)
    if others:
        pin_process(sorted(others))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


class _Calibration:
    """One calibration's steps over its farm, options, source profile, settings and books."""

    def __init__(
        self,
        farm: Farm,
        options: CalibrationOptions,
        source: DeviceProfile,
        settings: MeasureSettings,
        books: Books,
    ) -> None:
        self.farm, self.options, self.settings, self.books = farm, options, settings, books
        self.kernels = isinstance(farm.devices[options.device], HostDevice) and options.transfer_from is None
        # ORT's profiler names the kernels of the graph this host runs: level "all"
        self.source = source.model_copy(update={"kernel_graph": "all"}) if self.kernels else source
        self.history: list[dict[str, Any]] = []

    def generate(
        self, count: int, seed: int, *, weights: Mapping[str, float] | None = None, start: int = 0
    ) -> list[CalibrationModel]:
        """`count` generated models (read back from the journal when a resume has them)."""
        made = []
        for model in calibration_models(
            count, seed, weights=weights, start=start, cache=self.books.journal, skipped=self.books.say
        ):
            made.append(model)
            self.books.progress.advance("generating models")
        return made

    def measure(self, models: Sequence[CalibrationModel], label: str, *, kernels: bool) -> list[Measured]:
        return measure_models(
            self.farm,
            self.options.device,
            models,
            self.source,
            self.settings,
            self.books,
            kernels=kernels,
            passes=self.options.passes,
            label=label,
        )

    def run(self, out_dir: Path) -> CalibrationReport:
        o = self.options
        fitted = o.shots if o.transfer_from is not None else o.models
        parts = 2 if o.repeat else 1
        self.books.progress.plan(o.held + fitted + o.passes * (parts * o.held + fitted))
        # The held-out models come first and are never fitted on (a seed of their own).
        held_models = self.generate(o.held, o.seed + 1_000_003)
        check = self.measure(held_models, "held-out ", kernels=False)
        noise: dict[str, float] = {}
        if o.repeat:  # the protocol run again on the same models: how well the device agrees with itself
            check, noise = self._repeated(check, self.measure(held_models, "repeat ", kernels=False))
        if o.transfer_from is not None:
            mode = "few-shot"
            fit = self.measure(self.generate(o.shots, o.seed), "", kernels=False)
            learned: KernelModel | None = refit_scales(
                load_kernel_model(str(self.source.kernel_model)),
                [m.sample() for m in fit],
                self.source,
                threads=o.threads,
            )
        elif self.kernels:
            mode = "full"
            fit, learned = self._adaptive_fit()
        else:
            mode = "roofline"
            fit, learned = self.measure(self.generate(o.models, o.seed), "", kernels=False), None
        return self._report(out_dir, mode, fit, check, noise, learned, fitted)

    def _repeated(
        self, check: list[Measured], again: list[Measured]
    ) -> tuple[list[Measured], dict[str, float]]:
        """The held-out models measured twice: the noise floor, and each model's fastest of both."""
        repeated = {m.name: m for m in again}
        check = [m for m in check if m.name in repeated]
        noise = {
            **noise_floor([m.latency_ms for m in check], [repeated[m.name].latency_ms for m in check]),
            "passes": float(self.options.passes),
        }
        merged = [
            replace(m, latency_ms=min(m.latency_ms, r.latency_ms), passes_ms=m.passes_ms + r.passes_ms)
            for m, r in ((m, repeated[m.name]) for m in check)
        ]
        return merged, noise

    def _report(
        self,
        out_dir: Path,
        mode: str,
        fit: list[Measured],
        check: list[Measured],
        noise: dict[str, float],
        learned: KernelModel | None,
        fitted: int,
    ) -> CalibrationReport:
        """The profile fitted from `fit` (written to `out_dir`) and how it predicts `check`."""
        o, source, device = self.options, self.source, self.options.device
        out_dir.mkdir(parents=True, exist_ok=True)
        totals = [(m.summary, m.latency_ms) for m in fit]
        roofline_profile = (
            fit_efficiency(totals, source.model_copy(update={"efficiency": {}})) if len(fit) >= 3 else source
        )
        a, b = flops_baseline_fit(totals)
        measured_ms = [m.latency_ms for m in check]
        roofline_ms = [predict(m.summary, roofline_profile, threads=o.threads).latency_ms for m in check]
        flops_ms = [a * m.summary.macs + b for m in check]
        emulated_ms = (
            [learned.latency_ms(m.summary, source) for m in check] if learned is not None else roofline_ms
        )
        emulator = accuracy_report(emulated_ms, measured_ms)
        kernel_path = out_dir / f"{device}.kernels.json"
        if learned is not None:
            save_kernel_model(learned, kernel_path)
        finite = {k: round(v, 4) for k, v in emulator.items() if k != "n" and math.isfinite(v)}
        profile = roofline_profile.model_copy(
            update={
                "name": device,
                "device_class": self.farm.devices[device].device_class,
                "description": f"{mode} calibration of {device} ({o.threads} thread(s)) from {source.name}",
                "kernel_model": str(kernel_path) if learned is not None else None,
                "fitted_on": self.farm.devices[device].identity() or None,
                "fitted_on_kind": self.farm.devices[device].kind,
                "calibration": {
                    "mode": mode,
                    "models": len(fit),
                    "held_out": len(check),
                    "threads": o.threads,
                    **{f"held_out_{k}": v for k, v in finite.items()},
                    **{f"noise_{k}": round(v, 4) for k, v in noise.items() if k != "n" and math.isfinite(v)},
                },
                "published": (),
            }
        )
        path = save_profile(profile, out_dir / f"{device}.yaml")
        rows = [
            {
                "model": m.name,
                "family": m.family,
                "measured_ms": m.latency_ms,
                "emulated_ms": e,
                "roofline_ms": r,
                "flops_ms": f,
            }
            for m, e, r, f in zip(check, emulated_ms, roofline_ms, flops_ms, strict=True)
        ]
        return CalibrationReport(
            device=device,
            mode=mode,
            models=len(fit),
            held_out=len(check),
            emulator=emulator,
            roofline=accuracy_report(roofline_ms, measured_ms),
            flops_baseline=accuracy_report(flops_ms, measured_ms),
            noise_floor=noise,
            profile_path=path,
            rows=rows,
            flops_fit=(a, b),
            left_out=(fitted - len(fit), o.held - len(check)),
            rounds=self.history,
        )

    def _adaptive_fit(self) -> tuple[list[Measured], KernelModel]:
        """Fit on a first half, then add models rich in the worst-predicted kinds, round by round."""
        o, profile = self.options, self.source
        first = max(MIN_MODELS - 2, o.models // 2) if o.rounds > 1 else o.models
        generated = self.generate(first, o.seed)
        fit = self.measure(generated, "", kernels=True)
        learned = fit_kernel_model([m.sample() for m in fit], profile, threads=o.threads, seed=o.seed)
        remaining = o.models - first
        for round_index in range(1, o.rounds):
            if remaining <= 0:
                break
            # Errors of a model fitted without this half, on this half: where more data pays.
            half = len(fit) // 2
            probe = fit_kernel_model(
                [m.sample() for m in fit[:half]], profile, threads=o.threads, seed=o.seed
            )
            errors = kind_errors(probe, fit[half:], profile)
            weights = block_weights(errors)
            batch = (
                remaining if round_index == o.rounds - 1 else max(1, remaining // (o.rounds - round_index))
            )
            self.history.append({"round": round_index, "errors": errors, "weights": weights, "added": batch})
            worst = ", ".join(f"{kind} {error:.2f}" for kind, error in sorted(errors.items()))
            self.books.say(f"round {round_index}: median kernel error per kind {worst}")
            start = max(m.index for m in generated) + 1
            added = self.generate(batch, o.seed, weights=weights, start=start)
            generated += added
            fit += self.measure(added, f"round {round_index} ", kernels=True)
            remaining -= batch
            learned = fit_kernel_model([m.sample() for m in fit], profile, threads=o.threads, seed=o.seed)
        return fit, learned
