"""What really speeds a model up on ONNX Runtime's CPU provider: export and quantization choices
side by side, on the host, one thread, batch 1.

Run: `.venv/bin/python benchmarks/latency_choices.py [--tasks a,b] [--rounds 5] [--json PATH]
[--prune-ratios 0.25,0.4,0.5] [--exact-ratios 0.4]`.
Prints a table per task and writes JSON (default benchmarks/results/latency_choices.json).
Variants of one model are timed interleaved, round by round (each round times every variant
for `--runs` calls after a warm-up), and the median over rounds is reported with its ratio to
fp32 at full graph optimisation: ratios are measured side by side, so machine load cancels.
Weights are the seeded untrained model's (latency does not depend on their values); int8 is
calibrated on the task's training inputs. Channel pruning (dense convs) is timed at each of
`--prune-ratios`, with adacomp's rounded channel counts, and at each of `--exact-ratios` with the
exact counts the ratio gives too ('' for none).
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
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's calibration warnings; the caller's level after
    with contextlib.ExitStack() as restore, tempfile.TemporaryDirectory() as tmp:
        restore.callback(root.setLevel, level)
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


def variants(
    task_name: str, prune_ratios: Sequence[float] = (0.25, 0.4, 0.5), exact_ratios: Sequence[float] = (0.4,)
) -> dict[str, tuple[bytes, str]]:
    """name -> (ONNX bytes, graph optimisation level). Each graph is exported once: a variant
    that only differs in its session config or quantizer settings reuses it."""
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
    weights_only = export_onnx(model, example, plan=_every_layer(model, "int8_weights"))
    out["int8 weights only, float compute (adacomp int8_weights)"] = (weights_only, "all")
    out["int8 weights only, without the folding session config"] = (
        _without_session_config(weights_only),
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
    # (ratio, channel multiple): exact counts (1) just before the same ratio rounded (None)
    choices: list[tuple[float, int | None]] = [(r, 1) for r in exact_ratios if r not in prune_ratios]
    for ratio in prune_ratios:
        if ratio in exact_ratios:
            choices.append((ratio, 1))
        choices.append((ratio, None))
    for ratio, multiple in choices:
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
        pruned_proto = to_onnx_proto(pruned, example)  # the float graph, as export_onnx writes it
        out[f"{label} dense convs fp32 ({facts.macs / 1e6:.1f} M MACs)"] = (
            pruned_proto.SerializeToString(),
            "all",
        )
        if multiple is None:
            out[f"{label} dense convs + int8 QDQ all ops"] = (int8(pruned_proto, calibration), "all")
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


def measure(
    task_name: str,
    rounds: int,
    runs: int,
    prune_ratios: Sequence[float] = (0.25, 0.4, 0.5),
    exact_ratios: Sequence[float] = (0.4,),
) -> dict[str, object]:
    task = load_task(task_name)
    built = variants(task_name, prune_ratios, exact_ratios)
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


def _ratios(text: str) -> list[float]:
    """'0.25,0.5' -> [0.25, 0.5] ('' -> none); each a fraction of channels removed, in (0, 1)."""
    try:
        ratios = [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ratios, got {text!r}") from None
    if any(not 0 < r < 1 for r in ratios):
        raise argparse.ArgumentTypeError(f"ratios are in (0, 1), got {text!r}")
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="mobilenet_digits,shapes_resnet")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "latency_choices.json"
    )
    parser.add_argument(
        "--prune-ratios", type=_ratios, default=[0.25, 0.4, 0.5], help="channel-pruning ratios timed, a,b"
    )
    parser.add_argument(
        "--exact-ratios", type=_ratios, default=[0.4], help="ratios timed with exact channel counts too"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = [
        measure(name, args.rounds, args.runs, args.prune_ratios, args.exact_ratios)
        for name in args.tasks.split(",")
        if name
    ]
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
