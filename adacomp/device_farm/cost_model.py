"""The analytic cost model of the emulated devices: pure functions from a graph summary and a profile.

Per executed node, a roofline (Williams, Waterman & Patterson, "Roofline: an insightful visual
performance model", CACM 2009): the node takes the longer of its compute time (MACs over the
profile's sustained throughput for its precision and kind) and its memory time (weights plus
activations read and written, over the effective DRAM bandwidth), plus a fixed dispatch
overhead. Memory-bound kinds (elementwise, pool, reshape, quantize, other) have no compute term.

What the runtime does when a device lacks kernels for a precision (ONNX Runtime's CPU provider):
- int8 without int8 kernels: the QDQ nodes stay, so the node runs as DequantizeLinear -> fp32
  kernel -> QuantizeLinear; weights are dequantized once at load (4 bytes each at run time) and
  every activation pays a dequantize (read 1 B, write 4 B) and a quantize (read 4 B, write 1 B).
- fp16 without fp16 kernels: ORT's InsertCastTransformer wraps the node in Casts to fp32 and
  back (read 2 B, write 4 B each way); weights are cast once at load. Data-movement kinds
  (reshape, quantize) have kernels for every type and pay nothing extra.

The profile's per-kind ``efficiency`` divides a node's roofline time, which keeps latency linear
in 1/efficiency and so makes ``fit_efficiency`` an exact non-negative least-squares problem.
Energy is active CPU power times latency plus DRAM energy per byte moved (the split used by
e.g. Horowitz, "Computing's energy problem", ISSCC 2014). No I/O here: profiles and graphs come in
as values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls
from scipy.stats import kendalltau

from adacomp.device_farm.graph import COMPUTE_KINDS, GraphSummary, OpCost, OpKind, Precision
from adacomp.device_farm.profiles import DeviceProfile
from adacomp.errors import AdacompError

MIB = 1024 * 1024
# Kinds that need arithmetic kernels of their precision (and so casts when the device has none).
_TYPED_KINDS = frozenset({*COMPUTE_KINDS, OpKind.ELEMENTWISE, OpKind.POOL, OpKind.OTHER})
# Efficiency factors the fit may return: beyond these a kind is effectively free or stalled.
_EFFICIENCY_RANGE = (1e-3, 1e3)


@dataclass(frozen=True)
class OpTime:
    name: str
    kind: OpKind
    dtype: Precision
    compute_ms: float
    memory_ms: float  # includes dequantize/cast passes when the device lacks the precision's kernels
    overhead_ms: float
    total_ms: float
    bytes_moved: int


@dataclass(frozen=True)
class Prediction:
    latency_ms: float
    energy_mj: float
    peak_memory_mb: float
    ops: tuple[OpTime, ...]
    bytes_moved: int

    def ms_by_kind(self) -> dict[OpKind, float]:
        totals: dict[OpKind, float] = {}
        for op in self.ops:
            totals[op.kind] = totals.get(op.kind, 0.0) + op.total_ms
        return totals


@dataclass(frozen=True)
class _Roofline:
    """One node at efficiency 1: the terms every public function is built from."""

    compute_ms: float
    memory_ms: float
    conversion_ms: float  # dequantize/cast passes of a precision the device has no kernels for
    nodes: int  # dispatched nodes (3 when Q/DQ or Casts stay around it)
    bytes_moved: int
    extra_weight_bytes: int  # weights expanded at load (int8 -> fp32, fp16 -> fp32)

    @property
    def base_ms(self) -> float:
        return max(self.compute_ms, self.memory_ms) + self.conversion_ms


def _roofline(op: OpCost, profile: DeviceProfile, threads: int) -> _Roofline:
    weights, a_in, a_out = op.weight_bytes, op.activation_bytes_in, op.activation_bytes_out
    precision: Precision = op.dtype
    conversion_bytes, nodes, extra_weights = 0, 1, 0
    if op.kind in _TYPED_KINDS and op.dtype != "fp32" and not profile.has_kernels(op.dtype):
        precision = "fp32"
        if op.dtype == "int8":
            # DQ (read 1 B, write 4 B) before, Q (read 4 B, write 1 B) after; weights dequantized at load.
            scale = 4
            conversion_bytes = 5 * (a_in + a_out)
        else:
            # Cast fp16 -> fp32 (read 2 B, write 4 B) before and back after; weights cast at load.
            scale = 2
            conversion_bytes = 3 * (a_in + a_out)
        extra_weights = (scale - 1) * weights
        weights, a_in, a_out = scale * weights, scale * a_in, scale * a_out
        nodes = 3
    bytes_moved = weights + a_in + a_out
    bandwidth = profile.bandwidth_gbs * 1e9 / 1e3  # bytes per ms
    compute_ms = 0.0
    if op.kind in COMPUTE_KINDS and op.macs:
        gmacs = profile.gmacs(precision, op.kind) * profile.thread_speedup(threads)
        compute_ms = op.macs / (gmacs * 1e9) * 1e3
    return _Roofline(
        compute_ms=compute_ms,
        memory_ms=bytes_moved / bandwidth,
        conversion_ms=conversion_bytes / bandwidth,
        nodes=nodes,
        bytes_moved=bytes_moved + conversion_bytes,
        extra_weight_bytes=extra_weights,
    )


def roofline_terms(op: OpCost, profile: DeviceProfile, threads: int = 1) -> tuple[float, float]:
    """(compute ms, memory ms incl. conversions) of one kernel at efficiency 1: learned features."""
    roof = _roofline(op, profile, threads)
    return roof.compute_ms, roof.memory_ms + roof.conversion_ms


def kernel_prior_ms(op: OpCost, profile: DeviceProfile, threads: int = 1) -> float:
    """The roofline's time for one kernel at efficiency 1, plus a microsecond: the learned model's
    prior. Overheads and fitted efficiencies are left out so refitting them never moves it."""
    return _roofline(op, profile, threads).base_ms + 1e-3


def predict(summary: GraphSummary, profile: DeviceProfile, *, threads: int = 1) -> Prediction:
    """Latency, energy and peak memory of one inference of `summary` on `profile`."""
    if threads < 1:
        raise AdacompError(f"threads must be >= 1, got {threads}")
    overhead_ms = profile.op_overhead_us / 1e3
    ops: list[OpTime] = []
    extra_weights = 0
    for op in summary.executed:
        roof = _roofline(op, profile, threads)
        efficiency = profile.efficiency_of(op.kind)
        overhead = roof.nodes * overhead_ms
        ops.append(
            OpTime(
                name=op.name,
                kind=op.kind,
                dtype=op.dtype,
                compute_ms=roof.compute_ms / efficiency,
                memory_ms=(roof.memory_ms + roof.conversion_ms) / efficiency,
                overhead_ms=overhead,
                total_ms=roof.base_ms / efficiency + overhead,
                bytes_moved=roof.bytes_moved,
            )
        )
        extra_weights += roof.extra_weight_bytes
    latency_ms = profile.run_overhead_us / 1e3 + sum(op.total_ms for op in ops)
    bytes_moved = sum(op.bytes_moved for op in ops)
    # W x ms = mJ; pJ = 1e-9 mJ.
    energy_mj = profile.power_w(threads) * latency_ms + profile.dram_pj_per_byte * bytes_moved * 1e-9
    resident = summary.weight_bytes + extra_weights + summary.peak_activation_bytes
    return Prediction(
        latency_ms=latency_ms,
        energy_mj=energy_mj,
        peak_memory_mb=resident / MIB + profile.runtime_arena_mb,
        ops=tuple(ops),
        bytes_moved=bytes_moved,
    )


def kind_times(
    summary: GraphSummary, profile: DeviceProfile, *, threads: int = 1
) -> tuple[dict[OpKind, float], int]:
    """Roofline ms per kind at efficiency 1, and the number of dispatched nodes: the fit's regressors."""
    times: dict[OpKind, float] = {}
    nodes = 0
    for op in summary.executed:
        roof = _roofline(op, profile, threads)
        times[op.kind] = times.get(op.kind, 0.0) + roof.base_ms
        nodes += roof.nodes
    return times, nodes


def fit_efficiency(
    samples: Sequence[tuple[GraphSummary, float]],
    profile: DeviceProfile,
    *,
    threads: int = 1,
    fit_overhead: bool = True,
) -> DeviceProfile:
    """`profile` with per-kind efficiency (and op overhead) fitted to measured latencies in ms.

    latency = run + sum_k t_k / e_k + nodes * overhead is linear in x_k = 1/e_k, the per-node and
    the per-inference overhead, so non-negative least squares (Lawson & Hanson;
    ``scipy.optimize.nnls``) finds them. Each row is divided by its measured latency, so the fit
    minimises *relative* error (a 0.05 ms model counts as much as a 5 ms one: what "within 10 %"
    asks for); columns are then scaled to unit norm so kinds with tiny times are not ignored. A
    kind absent from every sample keeps its previous factor.
    """
    if not samples:
        raise AdacompError("fit_efficiency needs at least one (summary, measured ms) sample")
    bad = [ms for _, ms in samples if not (math.isfinite(ms) and ms > 0)]
    if bad:
        raise AdacompError(f"measured latencies must be positive milliseconds, got {bad[0]!r}")
    rows = [kind_times(summary, profile, threads=threads) for summary, _ in samples]
    kinds = [kind for kind in OpKind if any(times.get(kind, 0.0) > 0 for times, _ in rows)]
    columns = [[times.get(kind, 0.0) for times, _ in rows] for kind in kinds]
    measured = np.array([ms for _, ms in samples], dtype=np.float64)
    overhead_ms = profile.op_overhead_us / 1e3
    node_counts = np.array([nodes for _, nodes in rows], dtype=np.float64)
    if fit_overhead:
        columns.append(list(node_counts))
        columns.append([1.0] * len(samples))  # per-inference overhead
    else:
        measured = measured - node_counts * overhead_ms - profile.run_overhead_us / 1e3
    weights = 1.0 / np.array([ms for _, ms in samples], dtype=np.float64)
    matrix = np.array(columns, dtype=np.float64).T * weights[:, None]
    target = measured * weights
    norms = np.linalg.norm(matrix, axis=0)
    norms[norms == 0] = 1.0
    solution, _ = nnls(matrix / norms, target)
    solution = solution / norms
    low, high = _EFFICIENCY_RANGE
    efficiency = dict(profile.efficiency)
    for kind, inverse in zip(kinds, solution, strict=False):
        efficiency[kind] = high if inverse <= 1.0 / high else float(min(high, max(low, 1.0 / inverse)))
    update: dict[str, object] = {"efficiency": efficiency}
    if fit_overhead:
        update["op_overhead_us"] = float(solution[-2]) * 1e3
        update["run_overhead_us"] = float(solution[-1]) * 1e3
    return profile.model_copy(update=update)


def flops_baseline_fit(samples: Sequence[tuple[GraphSummary, float]]) -> tuple[float, float]:
    """(a, b) of the FLOPs-proportional predictor latency = a * macs + b (ordinary least squares)."""
    if not samples:
        raise AdacompError("flops_baseline_fit needs at least one (summary, measured ms) sample")
    macs = np.array([float(summary.macs) for summary, _ in samples])
    ms = np.array([float(latency) for _, latency in samples])
    if len(samples) < 2 or np.ptp(macs) == 0:
        return 0.0, float(ms.mean())
    slope, intercept = np.polyfit(macs, ms, 1, w=1.0 / ms)  # relative residuals, like the emulator fit
    return float(slope), float(intercept)


def accuracy_report(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """How well predictions track measurements: share within +-10 % / +-20 %, Kendall's tau, MAPE."""
    if len(predicted) != len(measured):
        raise AdacompError(f"accuracy_report: {len(predicted)} predictions for {len(measured)} measurements")
    if not measured:
        raise AdacompError("accuracy_report needs at least one measurement")
    p = np.asarray(predicted, dtype=np.float64)
    m = np.asarray(measured, dtype=np.float64)
    if np.any(m <= 0):
        raise AdacompError("accuracy_report: measured latencies must be > 0")
    relative = np.abs(p - m) / m
    tau = float("nan")
    if len(m) >= 2 and np.ptp(p) > 0 and np.ptp(m) > 0:
        tau = float(kendalltau(p, m).statistic)
    return {
        "n": float(len(m)),
        "within_10": float(np.mean(relative <= 0.10)),
        "within_20": float(np.mean(relative <= 0.20)),
        "kendall_tau": tau,
        "mape": float(np.mean(relative)),
    }
