"""What really speeds a model up on ONNX Runtime's CPU provider: export and quantization choices
side by side, on the host, one thread, batch 1.

Run: `.venv/bin/python benchmarks/latency_choices.py [--tasks a,b] [--rounds 5] [--json PATH]`.
Prints a table per task and writes JSON (default benchmarks/results/latency_choices.json).
Variants of one model are timed interleaved, round by round (each round times every variant
for `--runs` calls after a warm-up), and the median over rounds is reported with its ratio to
fp32 at full graph optimisation: ratios are measured side by side, so machine load cancels.
Weights are the seeded untrained model's (latency does not depend on their values); int8 is
calibrated on the task's training inputs.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from host_timing import OPT_LEVELS, paired_medians_ms
from report import write_report

from adacomp.platform.table import format_table
from adacomp.runtime.session import SESSION_CONFIG_KEY
from adacomp.search_spaces import CompressionPlan, Step, compress, export_onnx, model_facts
from adacomp.search_spaces.export import to_onnx_proto
from adacomp.search_spaces.techniques import channel_prune
from adacomp.search_spaces.techniques.quantize import calibration_reader
from adacomp.tasks import load_task


def int8(
    model: onnx.ModelProto,
    calibration: Sequence[np.ndarray],
    *,
    qoperator: bool = False,
    per_channel: bool = True,
    reduce_range: bool = True,
    only: Callable[[onnx.NodeProto], bool] | None = None,
) -> bytes:
    """onnxruntime's static quantizer with the given choices; `only` picks the nodes to quantize
    (None: every op the quantizer supports, so activations stay int8 between layers)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    nodes = None if only is None else [n.name for n in model.graph.node if only(n)]
    logging.getLogger().setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "f.onnx", Path(tmp) / "q.onnx"
        onnx.save(model, source)
        quantize_static(
            str(source),
            str(target),
            calibration_reader(model, calibration),
            quant_format=QuantFormat.QOperator if qoperator else QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=reduce_range,
            nodes_to_quantize=nodes,
        )
        return target.read_bytes()


def is_weighted(node: onnx.NodeProto) -> bool:
    return node.op_type in ("Conv", "Gemm", "MatMul")


def is_dense_weighted(node: onnx.NodeProto) -> bool:
    groups = next((a.i for a in node.attribute if a.name == "group"), 1)
    return is_weighted(node) and groups == 1


def variants(task_name: str) -> dict[str, tuple[bytes, str]]:
    """name -> (ONNX bytes, graph optimisation level)."""
    task = load_task(task_name)
    torch.manual_seed(0)
    model = task.build_model().eval()
    example = task.example_input(2)
    calibration = task.calibration_batches(4, 16)
    proto = to_onnx_proto(model, example)
    fp32 = proto.SerializeToString()
    out: dict[str, tuple[bytes, str]] = {f"fp32 opt={level}": (fp32, level) for level in OPT_LEVELS}
    out["int8 QDQ per-channel weighted nodes only"] = (int8(proto, calibration, only=is_weighted), "all")
    every_layer = _every_layer(model, "int8")
    out["int8 adacomp plan: every layer (QDQ per-channel, int8 region)"] = (
        export_onnx(model, example, plan=every_layer, calibration=calibration),
        "all",
    )
    out["int8 QDQ per-channel all ops"] = (int8(proto, calibration), "all")
    out["int8 QDQ per-tensor all ops"] = (int8(proto, calibration, per_channel=False), "all")
    out["int8 QDQ per-channel all ops, full 8-bit range"] = (
        int8(proto, calibration, reduce_range=False),
        "all",
    )
    out["int8 QOperator per-channel all ops"] = (int8(proto, calibration, qoperator=True), "all")
    weights_only = _every_layer(model, "int8_weights")
    out["int8 weights only, float compute (adacomp int8_weights)"] = (
        export_onnx(model, example, plan=weights_only),
        "all",
    )
    out["int8 weights only, without the folding session config"] = (
        _without_session_config(export_onnx(model, example, plan=weights_only)),
        "all",
    )
    out["int8 QDQ dense convs/linear only (depthwise float)"] = (
        int8(proto, calibration, only=is_dense_weighted),
        "all",
    )
    sites = [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Conv2d) and module.groups == 1 and name != _last_conv(model)
    ]
    for ratio, multiple in ((0.25, None), (0.4, 1), (0.4, None), (0.5, None)):
        plan = CompressionPlan.from_mapping(
            {layer: [Step.of("channel_prune", ratio=ratio)] for layer in sites}
        )
        label = f"channel_prune {ratio}" + (" exact counts" if multiple == 1 else "")
        try:
            with channel_multiple(multiple):
                pruned = compress(model, plan, example)
        except Exception as error:  # a plan the model cannot take: say so in the table
            print(f"{task_name}: {label}: {error}")
            continue
        facts = model_facts(pruned, example)
        out[f"{label} dense convs fp32 ({facts.macs / 1e6:.1f} M MACs)"] = (
            export_onnx(pruned, example),
            "all",
        )
        if multiple is None:
            out[f"{label} dense convs + int8 QDQ all ops"] = (
                int8(to_onnx_proto(pruned, example), calibration),
                "all",
            )
            out[f"{label} dense convs + int8 weights only"] = (
                export_onnx(pruned, example, plan=_every_layer(pruned, "int8_weights")),
                "all",
            )
    return out


def _every_layer(model: torch.nn.Module, precision: str) -> CompressionPlan:
    return CompressionPlan.from_mapping(
        {
            name: [Step.of("quantize", precision=precision)]
            for name, module in model.named_modules()
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear))
        }
    )


def _without_session_config(onnx_bytes: bytes) -> bytes:
    """The same graph without the metadata that lets ORT fold its weight DequantizeLinear nodes."""
    model = onnx.load_from_string(onnx_bytes)
    kept = [p for p in model.metadata_props if p.key != SESSION_CONFIG_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    return model.SerializeToString()


@contextlib.contextmanager
def channel_multiple(multiple: int | None) -> Iterator[None]:
    """Channel pruning with kept counts rounded to `multiple` (None: adacomp's default; 1: the
    exact count the ratio gives, as before rounding existed)."""
    default = channel_prune.CHANNEL_MULTIPLE
    channel_prune.CHANNEL_MULTIPLE = default if multiple is None else multiple
    try:
        yield
    finally:
        channel_prune.CHANNEL_MULTIPLE = default


def _last_conv(model: torch.nn.Module) -> str:
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)][-1]


def measure(task_name: str, rounds: int, runs: int) -> dict[str, object]:
    task = load_task(task_name)
    built = variants(task_name)
    medians = paired_medians_ms(built, task.example_input(1).numpy(), rounds=rounds, runs=runs)
    reference = medians["fp32 opt=all"]
    rows = [
        {
            "variant": name,
            "median_ms": round(median, 4),
            "speedup_vs_fp32": round(reference / median, 3),
            "bytes": len(built[name][0]),
        }
        for name, median in medians.items()
    ]
    return {"task": task_name, "rounds": rounds, "runs_per_round": runs, "variants": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="mobilenet_digits,shapes_resnet")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "latency_choices.json"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = [measure(name, args.rounds, args.runs) for name in args.tasks.split(",") if name]
    for result in results:
        print(f"\n{result['task']} (host, 1 thread, batch 1; median of {args.rounds} rounds)")
        rows = [
            [r["variant"], f"{r['median_ms']:.3f}", f"{r['speedup_vs_fp32']:.2f}x", r["bytes"]]
            for r in result["variants"]  # type: ignore[attr-defined]
        ]
        print(format_table(["variant", "ms", "vs fp32", "bytes"], rows))
    write_report(args.json, {"seconds": round(time.perf_counter() - started, 1), "tasks": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
