"""The learned per-kernel model: fit, exact save/load as JSON, few-shot transfer, one-line refusals.

Kernel times here come from a known synthetic device (a function of each kernel's shape that
the roofline does not know), so the fit has a right answer to find; the real device is in
tests/platform/test_farm_cli.py and the benchmark."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from adacomp.device_farm.cost_model import kernel_prior_ms
from adacomp.device_farm.graph import COMPUTE_KINDS, Geometry, GraphSummary, OpCost, OpKind
from adacomp.device_farm.kernel_model import (
    KernelModel,
    ModelSample,
    TreeEnsemble,
    fit_kernel_model,
    kernel_features,
    load_kernel_model,
    refit_scales,
    save_kernel_model,
)
from adacomp.device_farm.profiles import DeviceProfile, load_profile
from adacomp.errors import AdacompError


@pytest.fixture(scope="module")
def host() -> DeviceProfile:
    return load_profile("host")


def _op(rng: random.Random, i: int) -> OpCost:
    kind = rng.choice([OpKind.CONV, OpKind.CONV, OpKind.DEPTHWISE_CONV, OpKind.GEMM, OpKind.ELEMENTWISE])
    c_in, c_out = rng.choice([8, 16, 32, 64, 128]), rng.choice([8, 16, 32, 64, 128])
    pixels = rng.choice([1, 16, 64, 256, 1024, 4096])
    area = rng.choice([1, 9, 25]) if kind is not OpKind.GEMM else 1
    if kind is OpKind.DEPTHWISE_CONV:
        c_out = c_in
    geometry = None
    macs = 0
    weights = 0
    if kind in COMPUTE_KINDS:
        groups = c_in if kind is OpKind.DEPTHWISE_CONV else 1
        geometry = Geometry(c_in, c_out, area, rng.choice([1, 2]), groups, pixels)
        macs = pixels * c_out * (c_in // groups) * area
        weights = 4 * c_out * (c_in // groups) * area
    dtype = rng.choice(["fp32", "fp32", "int8"])
    size = 1 if dtype == "int8" else 4
    return OpCost(
        name=f"k{i}",
        op_type={OpKind.CONV: "FusedConv", OpKind.DEPTHWISE_CONV: "FusedConv", OpKind.GEMM: "Gemm"}.get(
            kind, "Add"
        ),
        kind=kind,
        dtype=dtype,  # type: ignore[arg-type]
        macs=macs,
        weight_bytes=weights // (4 // size),
        activation_bytes_in=size * c_in * pixels,
        activation_bytes_out=size * c_out * pixels,
        geometry=geometry,
    )


def _true_kernel_ms(op: OpCost, host: DeviceProfile, device_speed: float = 1.0) -> float:
    """A device whose kernels are slower than the roofline in ways only the shape explains."""
    prior = kernel_prior_ms(op, host)
    penalty = 1.0
    if op.geometry is not None:
        penalty *= 3.0 if op.kind is OpKind.DEPTHWISE_CONV else 1.0
        penalty *= 1.8 if op.geometry.kernel_area == 1 else 1.0
        penalty *= 0.6 if op.dtype == "int8" else 1.0
    return (prior * penalty + 0.004) / device_speed


def _samples(
    host: DeviceProfile, n: int, seed: int, speed: float = 1.0, noise: float = 0.02
) -> list[ModelSample]:
    rng = random.Random(seed)
    samples = []
    for m in range(n):
        ops = tuple(_op(rng, 100 * m + i) for i in range(rng.randint(3, 12)))
        kernel_ms = {op.name: _true_kernel_ms(op, host, speed) * (1 + rng.gauss(0, noise)) for op in ops}
        total = 0.01 / speed + sum(kernel_ms.values()) + 0.002 * len(ops)
        summary = GraphSummary(
            ops=ops, macs=sum(op.macs for op in ops), weight_bytes=0, peak_activation_bytes=0, sparsity=0
        )
        samples.append(ModelSample(summary, total, kernel_ms))
    return samples


def _within_10(model: KernelModel, samples: list[ModelSample], host: DeviceProfile) -> float:
    errors = [abs(model.latency_ms(s.summary, host) / s.latency_ms - 1) for s in samples]
    return float(np.mean(np.asarray(errors) <= 0.10))


@pytest.fixture(scope="module")
def fitted(host: DeviceProfile) -> KernelModel:
    return fit_kernel_model(_samples(host, 120, seed=0), host)


def test_learned_model_predicts_held_out_models_the_roofline_misses(
    fitted: KernelModel, host: DeviceProfile
) -> None:
    held_out = _samples(host, 40, seed=1)
    roofline = [
        abs(sum(kernel_prior_ms(op, host) for op in s.summary.executed) / s.latency_ms - 1) for s in held_out
    ]
    assert np.mean(np.asarray(roofline) <= 0.10) < 0.5
    assert _within_10(fitted, held_out, host) >= 0.9
    assert set(fitted.ensembles) >= {"conv", "depthwise_conv", "elementwise"}


def test_saved_model_loads_from_json_and_predicts_identically(
    fitted: KernelModel, host: DeviceProfile, tmp_path: Path
) -> None:
    path = save_kernel_model(fitted, tmp_path / "k.json")
    data = json.loads(path.read_text())  # plain JSON: nothing to execute on load
    assert data["format"] == "adacomp.kernel_model/1"
    loaded = load_kernel_model(path)
    for sample in _samples(host, 10, seed=2):
        ops = sample.summary.executed
        assert np.allclose(loaded.kernel_ms(ops, host), fitted.kernel_ms(ops, host), rtol=0, atol=0)
    assert loaded.scales == fitted.scales


def test_tree_arrays_reproduce_scikit_learns_prediction_exactly() -> None:
    from sklearn.ensemble import GradientBoostingRegressor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 16))
    y = np.sin(x[:, 0]) + x[:, 3] ** 2 - 0.5 * x[:, 7]
    gbm = GradientBoostingRegressor(loss="huber", n_estimators=50, max_depth=4, random_state=0).fit(x, y)
    ensemble = TreeEnsemble.from_sklearn(gbm, x)
    probe = rng.normal(size=(200, 16))
    assert np.allclose(ensemble.predict(probe), gbm.predict(probe), rtol=1e-12, atol=1e-12)


def test_few_shot_transfer_to_a_faster_device_from_ten_measurements(
    fitted: KernelModel, host: DeviceProfile
) -> None:
    """HELP's setting: the same kernels on a device 1.7x faster with other overheads, ten models."""
    shots = _samples(host, 10, seed=3, speed=1.7)
    held_out = _samples(host, 40, seed=4, speed=1.7)
    assert _within_10(fitted, held_out, host) < 0.2  # untransferred: off by the speed ratio
    transferred = refit_scales(fitted, shots, host, threads=2)
    assert _within_10(transferred, held_out, host) >= 0.8
    assert transferred.threads == 2 and transferred.tree_threads == 1
    assert transferred.ensembles is fitted.ensembles  # only the four scales moved


def test_kind_without_enough_kernels_keeps_the_median_ratio(host: DeviceProfile) -> None:
    samples = _samples(host, 3, seed=5)
    model = fit_kernel_model(samples, host)
    assert not model.ensembles and set(model.fallback) <= {k.value for k in OpKind}
    assert all(math.isfinite(v) for v in model.fallback.values())


def test_features_are_finite_for_every_kind(host: DeviceProfile) -> None:
    ops = [op for s in _samples(host, 20, seed=6) for op in s.summary.executed]
    assert np.all(np.isfinite(kernel_features(ops, host)))


def _corrupt(fitted: KernelModel, tmp_path: Path, change: object) -> Path:
    data = fitted.to_dict()
    change(data)  # type: ignore[operator]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="other"), "not an adacomp kernel model"),
        (lambda d: d["features"].pop(), "fitted on other features"),
        (lambda d: d["scales"].update(compute=-1.0), "scales must be finite and >= 0"),
        (lambda d: d["scales"].pop("memory"), "scales need run_ms, per_kernel_ms, compute, memory"),
        (lambda d: d["ensembles"]["conv"]["left"].__setitem__(0, 10**9), "points outside"),
        (lambda d: d["ensembles"]["conv"]["feature"].__setitem__(0, 99), "feature that does not exist"),
        (
            lambda d: d["ensembles"]["conv"]["value"].__setitem__(0, float("nan")),
            "must be finite|not a finite number",
        ),
        (lambda d: d["ensembles"].update(warp=d["ensembles"]["conv"]), "unknown kernel kinds"),
    ],
)
def test_a_bad_kernel_model_is_refused_in_one_line(
    fitted: KernelModel, tmp_path: Path, change: object, message: str
) -> None:
    with pytest.raises(AdacompError, match=message) as error:
        load_kernel_model(_corrupt(fitted, tmp_path, change))
    assert "\n" not in str(error.value) and "bad.json" in str(error.value)


def test_truncated_json_and_missing_files_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    path.write_text('{"format": "adacomp.kern')
    with pytest.raises(AdacompError, match="not valid JSON"):
        load_kernel_model(path)
    with pytest.raises(AdacompError, match="cannot be read"):
        load_kernel_model(tmp_path / "absent.json")


def test_a_profile_naming_a_missing_kernel_model_is_refused(host: DeviceProfile, tmp_path: Path) -> None:
    from adacomp.device_farm.profiles import save_profile

    path = save_profile(
        host.model_copy(update={"kernel_model": str(tmp_path / "gone.json")}), tmp_path / "p.yaml"
    )
    with pytest.raises(AdacompError, match=r"field kernel_model: file .* does not exist"):
        load_profile(path)


def test_a_profile_and_its_kernel_model_move_together(
    fitted: KernelModel, host: DeviceProfile, tmp_path: Path
) -> None:
    from adacomp.device_farm.profiles import save_profile

    save_kernel_model(fitted, tmp_path / "a" / "dev.kernels.json")
    save_profile(
        host.model_copy(update={"kernel_model": str(tmp_path / "a" / "dev.kernels.json")}),
        tmp_path / "a" / "dev.yaml",
    )
    (tmp_path / "a").rename(tmp_path / "b")
    moved = load_profile(tmp_path / "b" / "dev.yaml")
    assert moved.kernel_model == str((tmp_path / "b" / "dev.kernels.json").resolve())
