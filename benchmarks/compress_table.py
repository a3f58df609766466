"""Each technique alone and in combination on the digits task: accuracy, storage, MACs.

Run: `make bench` (or `.venv/bin/python benchmarks/compress_table.py [--seed N] [--out PATH]`).
Prints a table and writes JSON beside it (benchmarks/results/compress_table.json). Accuracy is
measured on the exported ONNX artifact (quantized where planned) after the task's budgeted
fine-tune; reductions are against the uncompressed model, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from adacomp.platform.table import format_table
from adacomp.search_spaces import CompressionPlan, Step, compress, export_onnx, model_facts
from adacomp.tasks import evaluate, evaluate_onnx, load_task, pretrained_model, train

CONVS = ["features.conv1", "features.conv2", "features.conv3"]
ALL = [*CONVS, "fc1", "fc2"]


def every(layers: list[str], *steps: Step) -> dict[str, list[Step]]:
    return {layer: list(steps) for layer in layers}


def plans() -> dict[str, CompressionPlan]:
    int8 = Step.of("quantize", precision="int8")
    fp16 = Step.of("quantize", precision="fp16")
    singles = {
        "magnitude_prune 0.75": every(ALL, Step.of("magnitude_prune", sparsity=0.75)),
        "channel_prune 0.5": every([*CONVS, "fc1"], Step.of("channel_prune", ratio=0.5)),
        "low_rank 0.25": every(
            ["features.conv2", "features.conv3", "fc1"], Step.of("low_rank", rank_fraction=0.25)
        ),
        "depthwise_separable m=1": every(
            ["features.conv2", "features.conv3"], Step.of("depthwise_separable", multiplier=1)
        ),
        "fire 0.5/0.5": every(
            ["features.conv2", "features.conv3"], Step.of("fire", squeeze_ratio=0.5, expand_1x1_fraction=0.5)
        ),
        "gap_head": {"fc1": [Step.of("gap_head")]},
        "quantize int8": every(ALL, int8),
        "quantize int8 per-tensor": every(ALL, Step.of("quantize", precision="int8_per_tensor")),
        "quantize fp16": every(ALL, fp16),
    }
    combos = {
        "low_rank fc1 + prune 0.5 + int8": {
            **every([*CONVS, "fc2"], int8),
            "fc1": [Step.of("low_rank", rank_fraction=0.25), Step.of("magnitude_prune", sparsity=0.5), int8],
        },
        "channel_prune 0.5 + gap_head + int8": {
            **every(CONVS, Step.of("channel_prune", ratio=0.5), int8),
            "fc1": [Step.of("gap_head"), int8],
            "fc2": [int8],
        },
        "dw-separable + fire + low_rank + fp16": {
            "features.conv2": [Step.of("depthwise_separable", multiplier=1), fp16],
            "features.conv3": [Step.of("fire", squeeze_ratio=0.5, expand_1x1_fraction=0.5), fp16],
            "fc1": [Step.of("low_rank", rank_fraction=0.1), fp16],
        },
        "examples/plans/digits_mixed.json": None,
    }
    built = {name: CompressionPlan.from_mapping(layers) for name, layers in singles.items()}
    for name, layers in combos.items():
        built[name] = (
            CompressionPlan.load(Path(__file__).parent.parent / name)
            if layers is None
            else CompressionPlan.from_mapping(layers)
        )
    return built


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "compress_table.json")
    args = parser.parse_args()

    task = load_task("digits")
    example = task.example_input(2)
    calibration = task.calibration_batches()
    model = pretrained_model(task, seed=args.seed)
    base_facts = model_facts(model, example)
    base_acc = evaluate_onnx(export_onnx(model, example), task.data.test)
    rows = [
        {
            "plan": "uncompressed",
            "torch_accuracy": evaluate(model, task.data.test),
            "accuracy": base_acc,
            **base_facts.to_dict(),
            "seconds": 0.0,
        }
    ]
    for name, plan in plans().items():
        started = time.perf_counter()
        compressed = compress(model, plan, example)
        train(compressed, task.data.train, task.finetune_budget, seed=args.seed)
        artifact = export_onnx(compressed, example, plan=plan, calibration=calibration)
        facts = model_facts(compressed, example, plan)
        rows.append(
            {
                "plan": name,
                "plan_json": plan.to_dict(),
                "torch_accuracy": evaluate(compressed, task.data.test),
                "accuracy": evaluate_onnx(artifact, task.data.test),
                **facts.to_dict(),
                "onnx_bytes": len(artifact),
                "seconds": time.perf_counter() - started,
            }
        )
        print(f"  {name}: done in {rows[-1]['seconds']:.1f} s", file=sys.stderr)

    table = format_table(
        [
            "plan",
            "torch acc %",
            "ONNX acc %",
            "d acc pt",
            "storage KiB",
            "storage x",
            "MACs",
            "MACs x",
            "params",
        ],
        [
            [
                r["plan"],
                f"{100 * r['torch_accuracy']:.2f}",
                f"{100 * r['accuracy']:.2f}",
                f"{100 * (r['accuracy'] - base_acc):+.2f}",
                f"{r['storage_bytes'] / 1024:.1f}",
                f"{base_facts.storage_bytes / r['storage_bytes']:.2f}",
                r["macs"],
                f"{base_facts.macs / r['macs']:.2f}",
                r["parameters"],
            ]
            for r in rows
        ],
    )
    command = "python benchmarks/compress_table.py " + " ".join(sys.argv[1:])
    print(
        f"# {command.strip()}  (digits, fine-tune {task.finetune_budget.epochs:g} epochs, seed {args.seed})"
    )
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"command": command.strip(), "python": platform.python_version(), "machine": platform.machine()}
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"written {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
