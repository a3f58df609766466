"""A learned per-kernel latency model on top of the roofline, and the few scale factors around it.

nn-Meter (Zhang et al., MobiSys'21) predicts each kernel the runtime runs with a random forest
over its shape; HELP (Lee et al., NeurIPS'21) adapts to a new device from a handful of
measurements. This module does both for the kernels of ``kernels.py``:

- **Per kernel kind, a gradient-boosted tree ensemble** (scikit-learn's
  ``GradientBoostingRegressor``) predicts ``log(measured / roofline)`` from the kernel's shape
  (channels, kernel area, stride, groups, output positions), its MACs and bytes, its precision,
  its op and its roofline terms. The roofline (``cost_model.kernel_prior_ms``, the profile's
  hardware numbers at efficiency 1) is the prior: a kind with too few samples to fit keeps the
  median ratio of what it has, or the roofline itself when it has none.
- **Whole-model latency** is ``run + per_kernel x kernels + compute x sum(compute kernels) +
  memory x sum(other kernels)``: four non-negative factors fitted on whole-model measurements.
  They absorb what per-kernel times miss (the profiler's own cost, the executor between
  kernels, the call itself). A new device gets a profile by refitting only these four on a few
  measurements, pulled towards the transferred values (`refit_scales`).

The fitted model is saved as JSON (the trees as plain arrays) and evaluated here with numpy:
loading it executes no code, unlike a pickle. Prediction walks every tree of a kind for every
kernel at once, one vectorised step per tree level.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import lsq_linear

from adacomp.device_farm.cost_model import kernel_prior_ms, roofline_terms
from adacomp.device_farm.graph import COMPUTE_KINDS, GraphSummary, OpCost, OpKind
from adacomp.device_farm.profiles import DeviceProfile
from adacomp.errors import AdacompError
from adacomp.safe_load import LoadLimits, load_json_file

FORMAT = "adacomp.kernel_model/1"
FEATURES = (
    "log_prior_ms",
    "log_compute_ms",
    "log_memory_ms",
    "log_macs",
    "log_weight_bytes",
    "log_bytes_in",
    "log_bytes_out",
    "precision",
    "op",
    "log_in_channels",
    "log_out_channels",
    "kernel_area",
    "stride",
    "log_groups",
    "depthwise",
    "log_out_pixels",
)
_PRECISION_CODE = {"fp32": 0.0, "fp16": 1.0, "int8": 2.0}
# A kind needs this many measured kernels before its trees are fitted; below, its median ratio.
MIN_KERNELS_TO_FIT = 24
SCALE_NAMES = ("run_ms", "per_kernel_ms", "compute", "memory")
_SCALE_LOWER = np.array([0.0, -0.05, 0.0, 0.0])  # per_kernel_ms: down to -50 us (profiler overhead)
_MAX_FILE_BYTES = 64 * 1024 * 1024
# Trees are flat arrays: many values, shallow.
_LIMITS = LoadLimits(max_bytes=_MAX_FILE_BYTES, max_items=20_000_000)


def op_code(op_type: str) -> float:
    """A stable number per op type (a tree can split distinct ops apart; order is arbitrary)."""
    return float(zlib.crc32(op_type.encode()) % 1009)


def kernel_features(ops: Sequence[OpCost], profile: DeviceProfile, threads: int = 1) -> np.ndarray:
    """One row of `FEATURES` per kernel."""
    rows = np.zeros((len(ops), len(FEATURES)), dtype=np.float64)
    for i, op in enumerate(ops):
        compute_ms, memory_ms = roofline_terms(op, profile, threads)
        g = op.geometry
        rows[i] = (
            math.log(kernel_prior_ms(op, profile, threads)),
            math.log(compute_ms + 1e-6),
            math.log(memory_ms + 1e-6),
            math.log1p(op.macs),
            math.log1p(op.weight_bytes),
            math.log1p(op.activation_bytes_in),
            math.log1p(op.activation_bytes_out),
            _PRECISION_CODE[op.dtype],
            op_code(op.op_type),
            math.log1p(g.in_channels) if g else 0.0,
            math.log1p(g.out_channels) if g else 0.0,
            float(g.kernel_area) if g else 0.0,
            float(g.stride) if g else 0.0,
            math.log1p(g.groups) if g else 0.0,
            1.0 if op.kind is OpKind.DEPTHWISE_CONV else 0.0,
            math.log1p(g.out_pixels) if g else 0.0,
        )
    return rows


@dataclass(frozen=True)
class TreeEnsemble:
    """A fitted boosted ensemble as flat arrays: prediction = base + rate x sum of leaf values."""

    base: float
    rate: float
    feature: np.ndarray  # per node; < 0 at leaves
    threshold: np.ndarray
    left: np.ndarray  # global node index; -1 at leaves
    right: np.ndarray
    value: np.ndarray
    roots: np.ndarray  # first node of each tree
    depth: int

    @classmethod
    def from_sklearn(cls, model: Any, sample: np.ndarray) -> TreeEnsemble:
        features, thresholds, lefts, rights, values, roots = [], [], [], [], [], []
        offset, depth = 0, 0
        for (estimator,) in model.estimators_:
            tree = estimator.tree_
            n = int(tree.node_count)
            left = np.asarray(tree.children_left, dtype=np.int64)
            right = np.asarray(tree.children_right, dtype=np.int64)
            roots.append(offset)
            features.append(np.asarray(tree.feature, dtype=np.int64))
            thresholds.append(np.asarray(tree.threshold, dtype=np.float64))
            lefts.append(np.where(left >= 0, left + offset, -1))
            rights.append(np.where(right >= 0, right + offset, -1))
            values.append(np.asarray(tree.value, dtype=np.float64).reshape(n))
            depth = max(depth, int(tree.max_depth))
            offset += n
        ensemble = cls(
            base=0.0,
            rate=float(model.learning_rate),
            feature=np.concatenate(features),
            threshold=np.concatenate(thresholds),
            left=np.concatenate(lefts),
            right=np.concatenate(rights),
            value=np.concatenate(values),
            roots=np.asarray(roots, dtype=np.int64),
            depth=depth,
        )
        # sklearn's starting value (mean, or median for robust losses), recovered exactly.
        base = float(model.predict(sample[:1])[0] - ensemble.predict(sample[:1])[0])
        return replace(ensemble, base=base)

    def predict(self, x: np.ndarray) -> np.ndarray:
        if len(self.roots) == 0:
            return np.full(len(x), self.base)
        x32 = x.astype(np.float32).astype(np.float64)  # sklearn compares float32 features
        node = np.repeat(self.roots[:, None], len(x), axis=1)
        rows = np.arange(len(x))[None, :]
        for _ in range(self.depth):
            left = self.left[node]
            go_left = x32[rows, np.maximum(self.feature[node], 0)] <= self.threshold[node]
            node = np.where(left < 0, node, np.where(go_left, left, self.right[node]))
        return self.base + self.rate * self.value[node].sum(axis=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "rate": self.rate,
            "depth": self.depth,
            "roots": self.roots.tolist(),
            "feature": self.feature.tolist(),
            "threshold": self.threshold.tolist(),
            "left": self.left.tolist(),
            "right": self.right.tolist(),
            "value": self.value.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> TreeEnsemble:
        try:
            arrays = {
                key: np.asarray(
                    data[key], dtype=np.int64 if key in ("roots", "feature", "left", "right") else np.float64
                )
                for key in ("roots", "feature", "threshold", "left", "right", "value")
            }
            base, rate, depth = float(data["base"]), float(data["rate"]), int(data["depth"])
        except (KeyError, TypeError, ValueError) as exc:
            raise AdacompError(f"{where}: expected tree arrays and base/rate/depth ({exc})") from None
        n = len(arrays["feature"])
        if any(
            arrays[key].ndim != 1 or len(arrays[key]) != n for key in ("threshold", "left", "right", "value")
        ):
            raise AdacompError(f"{where}: tree arrays must be flat and of equal length")
        nodes = np.concatenate([arrays["left"], arrays["right"], arrays["roots"]])
        if len(nodes) and (nodes.max(initial=-1) >= n or nodes.min(initial=0) < -1):
            raise AdacompError(f"{where}: a child or root index points outside the {n} nodes")
        if arrays["feature"].max(initial=-1) >= len(FEATURES) or not 0 <= depth <= 64:
            raise AdacompError(
                f"{where}: a split reads a feature that does not exist, or depth is out of range"
            )
        finite = [arrays["threshold"][arrays["left"] >= 0], arrays["value"], np.array([base, rate])]
        if not all(np.all(np.isfinite(a)) for a in finite):
            raise AdacompError(f"{where}: thresholds, values, base and rate must be finite")
        return cls(base=base, rate=rate, depth=depth, **arrays)


@dataclass(frozen=True)
class Scales:
    """How kernel times add up to a whole-model latency (see the module docstring)."""

    run_ms: float = 0.0
    per_kernel_ms: float = 0.0
    compute: float = 1.0
    memory: float = 1.0

    def as_list(self) -> list[float]:
        return [self.run_ms, self.per_kernel_ms, self.compute, self.memory]


@dataclass(frozen=True)
class KernelModel:
    """Trees fitted at `tree_threads` intra-op threads; scales fitted for a device run at `threads`."""

    tree_threads: int
    threads: int
    ensembles: Mapping[str, TreeEnsemble]  # per OpKind value
    fallback: Mapping[str, float]  # log-ratio of kinds without trees
    scales: Scales = field(default_factory=Scales)
    samples: Mapping[str, int] = field(default_factory=dict)
    notes: str = ""

    def kernel_ms(
        self, ops: Sequence[OpCost], profile: DeviceProfile, threads: int | None = None
    ) -> np.ndarray:
        """Predicted ms of each kernel, before the whole-model scales."""
        threads = self.threads if threads is None else threads
        if not ops:
            return np.zeros(0)
        x = kernel_features(ops, profile, self.tree_threads)
        log_ratio = np.zeros(len(ops))
        kinds = np.array([op.kind.value for op in ops])
        for kind in set(kinds.tolist()):
            rows = kinds == kind
            ensemble = self.ensembles.get(kind)
            log_ratio[rows] = ensemble.predict(x[rows]) if ensemble else self.fallback.get(kind, 0.0)
        ms = np.exp(x[:, 0] + np.clip(log_ratio, -12.0, 12.0))
        if threads != self.threads:  # compute kernels scale like the roofline's thread model
            factor = profile.thread_speedup(self.threads) / profile.thread_speedup(threads)
            ms = np.where(np.isin(kinds, [k.value for k in COMPUTE_KINDS]), ms * factor, ms)
        return ms

    def latency_ms(self, summary: GraphSummary, profile: DeviceProfile, threads: int | None = None) -> float:
        ops = summary.executed
        return float(self.scaled(ops, self.kernel_ms(ops, profile, threads)).sum() + self.scales.run_ms)

    def scaled(self, ops: Sequence[OpCost], kernel_ms: np.ndarray) -> np.ndarray:
        """Each kernel's share of the whole-model latency (the run overhead excluded)."""
        compute = np.array([op.kind in COMPUTE_KINDS for op in ops], dtype=bool)
        factor = np.where(compute, self.scales.compute, self.scales.memory)
        scaled = kernel_ms * factor
        return np.maximum(scaled + self.scales.per_kernel_ms, 0.1 * scaled)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "features": list(FEATURES),
            "tree_threads": self.tree_threads,
            "threads": self.threads,
            "notes": self.notes,
            "samples": dict(self.samples),
            "scales": dict(zip(SCALE_NAMES, self.scales.as_list(), strict=True)),
            "fallback": dict(self.fallback),
            "ensembles": {kind: ensemble.to_dict() for kind, ensemble in self.ensembles.items()},
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> KernelModel:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise AdacompError(f"{where}: not an adacomp kernel model (expected format {FORMAT!r})")
        if list(data.get("features", [])) != list(FEATURES):
            raise AdacompError(
                f"{where}: fitted on other features than this adacomp computes; calibrate again"
            )
        kinds = {kind.value for kind in OpKind}
        ensembles, fallback = data.get("ensembles", {}), data.get("fallback", {})
        scales = data.get("scales", {})
        if not isinstance(ensembles, dict) or not isinstance(fallback, dict) or not isinstance(scales, dict):
            raise AdacompError(f"{where}: ensembles, fallback and scales must be mappings")
        unknown = sorted((set(ensembles) | set(fallback)) - kinds)
        if unknown:
            raise AdacompError(f"{where}: unknown kernel kinds {unknown}; expected some of {sorted(kinds)}")
        try:
            values = [float(scales[name]) for name in SCALE_NAMES]
            fallback_values = {str(kind): float(value) for kind, value in fallback.items()}
            threads, tree_threads = int(data["threads"]), int(data["tree_threads"])
        except (KeyError, TypeError, ValueError):
            raise AdacompError(
                f"{where}: scales need {', '.join(SCALE_NAMES)} as numbers, and threads, tree_threads"
            ) from None
        in_range = all(math.isfinite(v) and v >= low for v, low in zip(values, _SCALE_LOWER, strict=True))
        if not in_range or not 1 <= min(threads, tree_threads) <= max(threads, tree_threads) <= 1024:
            raise AdacompError(
                f"{where}: scales must be finite and >= 0 (per_kernel_ms >= -0.05), threads in 1..1024"
            )
        if not all(math.isfinite(v) for v in fallback_values.values()):
            raise AdacompError(f"{where}: fallback log-ratios must be finite")
        return cls(
            tree_threads=tree_threads,
            threads=threads,
            ensembles={kind: TreeEnsemble.from_dict(e, f"{where}: {kind}") for kind, e in ensembles.items()},
            fallback=fallback_values,
            scales=Scales(*values),
            samples={str(k): int(v) for k, v in dict(data.get("samples", {})).items()},
            notes=str(data.get("notes", "")),
        )


def save_kernel_model(model: KernelModel, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(model.to_dict(), separators=(",", ":")) + "\n", encoding="utf-8")
    return path


_loaded: dict[tuple[str, int, int], KernelModel] = {}


def load_kernel_model(path: str | Path) -> KernelModel:
    """A saved kernel model (JSON only; cached per file and modification time)."""
    path = Path(path)
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        if key in _loaded:
            return _loaded[key]
        data = load_json_file(path, "kernel model", _LIMITS)
    except OSError as exc:
        raise AdacompError(f"kernel model {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    model = KernelModel.from_dict(data, f"kernel model {str(path)!r}")
    _loaded[key] = model
    return model


# --- fitting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSample:
    """One measured model: its kernels, each kernel's measured ms (None: not profiled), the total."""

    summary: GraphSummary
    latency_ms: float
    kernel_ms: Mapping[str, float] | None = None


def fit_kernel_model(
    samples: Sequence[ModelSample],
    profile: DeviceProfile,
    *,
    threads: int = 1,
    seed: int = 0,
    notes: str = "",
) -> KernelModel:
    """Trees per kernel kind on the profiled kernels, then the four scales on the totals."""
    from sklearn.ensemble import GradientBoostingRegressor

    by_kind: dict[str, tuple[list[OpCost], list[float]]] = {}
    for sample in samples:
        for op in sample.summary.executed:
            ms = (sample.kernel_ms or {}).get(op.name)
            if ms is not None and ms > 0:
                ops, times = by_kind.setdefault(op.kind.value, ([], []))
                ops.append(op)
                times.append(ms)
    ensembles: dict[str, TreeEnsemble] = {}
    fallback: dict[str, float] = {}
    counts = {kind: len(ops) for kind, (ops, _) in by_kind.items()}
    for kind, (ops, times) in sorted(by_kind.items()):
        x = kernel_features(ops, profile, threads)
        y = np.log(np.asarray(times)) - x[:, 0]
        if len(ops) < MIN_KERNELS_TO_FIT:
            fallback[kind] = float(np.median(y))
            continue
        gbm = GradientBoostingRegressor(
            loss="huber",
            n_estimators=300,
            max_depth=4,
            learning_rate=0.08,
            subsample=0.8,
            min_samples_leaf=3,
            random_state=seed,
        )
        gbm.fit(x, y)
        ensembles[kind] = TreeEnsemble.from_sklearn(gbm, x)
    model = KernelModel(
        tree_threads=threads,
        threads=threads,
        ensembles=ensembles,
        fallback=fallback,
        samples=counts,
        notes=notes,
    )
    return refit_scales(model, samples, profile, prior=None)


def refit_scales(
    model: KernelModel,
    samples: Sequence[ModelSample],
    profile: DeviceProfile,
    *,
    prior: float | None = 1.0,
    threads: int | None = None,
) -> KernelModel:
    """`model` with its four scales fitted to whole-model latencies (relative error, bounded
    least squares).

    `prior` > 0 adds that weight of pull towards the model's current scales (few-shot
    transfer: ten measurements cannot pin four free numbers against noise); None fits freely.
    `threads` is the thread count the new device runs with (default: the model's): the kernels
    are predicted as for the old device and the scales absorb the difference."""
    if not samples:
        raise AdacompError("refitting scales needs at least one measured model")
    bad = [s.latency_ms for s in samples if not (math.isfinite(s.latency_ms) and s.latency_ms > 0)]
    if bad:
        raise AdacompError(f"measured latencies must be positive milliseconds, got {bad[0]!r}")
    rows, targets = [], []
    for sample in samples:
        ops = sample.summary.executed
        ms = model.kernel_ms(ops, profile)
        compute = np.array([op.kind in COMPUTE_KINDS for op in ops], dtype=bool)
        row = [1.0, float(len(ops)), float(ms[compute].sum()), float(ms[~compute].sum())]
        rows.append([value / sample.latency_ms for value in row])
        targets.append(1.0)
    matrix, target = np.asarray(rows), np.asarray(targets)
    current = np.asarray(model.scales.as_list())
    if prior is not None and prior > 0:
        # First the one number a few measurements pin down well: how much faster or slower the
        # new device is overall (median ratio); the four scales then move around that.
        predicted = matrix @ current  # relative to each measured latency
        current = current / float(np.median(predicted[predicted > 0])) if np.any(predicted > 0) else current
        # Pull each scale towards its current value, relative to its size (a row per scale).
        weight = math.sqrt(prior)
        size = np.maximum(np.abs(current), [1e-3, 1e-3, 1e-2, 1e-2])
        matrix = np.vstack([matrix, np.diag(weight / size)])
        target = np.concatenate([target, weight * current / size])
    # The per-kernel term may be negative: the profiled kernel times the trees learned include
    # the profiler's own few microseconds per kernel, which the whole-model latency does not.
    solution = lsq_linear(matrix, target, bounds=(_SCALE_LOWER, np.inf)).x
    fitted = model.threads if threads is None else threads
    return KernelModel(
        tree_threads=model.tree_threads,
        threads=fitted,
        ensembles=model.ensembles,
        fallback=model.fallback,
        scales=Scales(*[float(v) for v in solution]),
        samples=model.samples,
        notes=model.notes,
    )
