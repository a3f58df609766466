"""`adacomp compress`: apply one plan to a task's model, fine-tune, evaluate, export, report.

The single-plan job that a search runs many times; kept free of Ray and MLflow so it is also
the quickest way to try a plan by hand.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import nn

from adacomp.errors import AdacompError
from adacomp.platform.table import format_table, human_bytes, human_count
from adacomp.search_spaces import CompressionPlan, compress, export_onnx, model_facts, validate_plan
from adacomp.search_spaces.techniques.magnitude_prune import bake_pruning
from adacomp.tasks import Task, TrainBudget, TrainReport, evaluate, evaluate_onnx, load_task, train
from adacomp.tasks.pretrained import load_weights, pretrained_model


@dataclass(frozen=True)
class ModelReport:
    accuracy: float  # torch model, test split
    onnx_accuracy: float  # the exported (quantized) artifact through onnxruntime, test split
    parameters: int
    nonzero_parameters: int
    macs: int
    storage_bytes: int
    onnx_bytes: int


@dataclass(frozen=True)
class CompressResult:
    task: str
    plan: CompressionPlan
    baseline: ModelReport
    compressed: ModelReport
    finetune: TrainReport | None
    out_dir: Path
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "plan": self.plan.to_dict(),
            "plan_hash": self.plan.hash,
            "baseline": asdict(self.baseline),
            "compressed": asdict(self.compressed),
            "finetune": asdict(self.finetune) if self.finetune else None,
            "seconds": round(self.seconds, 2),
        }

    def table(self) -> str:
        b, c = self.baseline, self.compressed

        def ratio(before: float, after: float) -> str:
            return f"{before / after:.2f}x smaller" if after else "-"

        rows = [
            [
                "accuracy (torch)",
                f"{b.accuracy:.2%}",
                f"{c.accuracy:.2%}",
                f"{(c.accuracy - b.accuracy) * 100:+.2f} pt",
            ],
            [
                "accuracy (ONNX)",
                f"{b.onnx_accuracy:.2%}",
                f"{c.onnx_accuracy:.2%}",
                f"{(c.onnx_accuracy - b.onnx_accuracy) * 100:+.2f} pt",
            ],
            [
                "parameters",
                human_count(b.parameters),
                human_count(c.parameters),
                ratio(b.parameters, c.parameters),
            ],
            [
                "non-zero parameters",
                human_count(b.nonzero_parameters),
                human_count(c.nonzero_parameters),
                ratio(b.nonzero_parameters, c.nonzero_parameters),
            ],
            ["MACs", human_count(b.macs), human_count(c.macs), ratio(b.macs, c.macs)],
            [
                "storage (encoded)",
                human_bytes(b.storage_bytes),
                human_bytes(c.storage_bytes),
                ratio(b.storage_bytes, c.storage_bytes),
            ],
            [
                "ONNX file",
                human_bytes(b.onnx_bytes),
                human_bytes(c.onnx_bytes),
                ratio(b.onnx_bytes, c.onnx_bytes),
            ],
        ]
        return format_table(["", "baseline", "compressed", "change"], rows)


def _report(model: nn.Module, task: Task, plan: CompressionPlan | None, onnx_model: bytes) -> ModelReport:
    example = task.example_input(2)
    facts = model_facts(model, example, plan)
    return ModelReport(
        accuracy=evaluate(model, task.data.test),
        onnx_accuracy=evaluate_onnx(onnx_model, task.data.test),
        parameters=facts.parameters,
        nonzero_parameters=facts.nonzero_parameters,
        macs=facts.macs,
        storage_bytes=facts.storage_bytes,
        onnx_bytes=len(onnx_model),
    )


def _baseline_model(
    task: Task, seed: int, weights: str | Path | None, cache_dir: Path | None, log: Callable[[str], None]
) -> nn.Module:
    """The user's weights when given, else the task's trained model (cached after its first training)."""
    if weights is None:
        log(f"training (or loading the cached) baseline for task {task.name!r} ...")
        return pretrained_model(task, seed=seed, cache_dir=cache_dir)
    model = task.build_model()
    load_weights(model, Path(weights))
    log(f"loaded weights from {weights}")
    return model.eval()


def run_compress(
    task_spec: str | Task,
    plan: CompressionPlan,
    out_dir: str | Path,
    *,
    seed: int = 0,
    weights: str | Path | None = None,
    finetune: TrainBudget | None = None,
    skip_finetune: bool = False,
    distill: bool = False,
    cache_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> CompressResult:
    """Compress the task's trained model with `plan`; write artifacts and a report to `out_dir`.

    The plan is validated on a fresh model before anything is trained, so a bad plan fails in
    a second, not after the baseline has trained.
    """
    started = time.perf_counter()
    task = load_task(task_spec) if isinstance(task_spec, str) else task_spec
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise AdacompError(f"out: {str(out)!r} exists and is not a directory")
    example = task.example_input(2)
    validate_plan(task.build_model(), plan, example)

    model = _baseline_model(task, seed, weights, cache_dir, log)
    baseline_onnx = export_onnx(model, example)
    baseline = _report(model, task, None, baseline_onnx)

    log(f"compressing: {plan}")
    compressed = compress(model, plan, example)
    budget = task.finetune_budget if finetune is None else finetune
    report: TrainReport | None = None
    if not skip_finetune:
        amount = f"{budget.steps} steps" if budget.steps else f"{budget.epochs:g} epochs"
        log(f"fine-tuning ({amount}){' with distillation' if distill else ''} ...")
        teacher = model if distill else None
        report = train(compressed, task.data.train, budget, seed=seed, teacher=teacher, augment=task.augment)
    compressed.eval()
    calibration = task.calibration_batches()
    compressed_onnx = export_onnx(compressed, example, plan=plan, calibration=calibration)
    result = CompressResult(
        task=task.name,
        plan=plan,
        baseline=baseline,
        compressed=_report(compressed, task, plan, compressed_onnx),
        finetune=report,
        out_dir=out,
        seconds=time.perf_counter() - started,
    )
    _write(out, result, compressed, baseline_onnx, compressed_onnx)
    return result


def _write(out: Path, result: CompressResult, model: nn.Module, baseline: bytes, compressed: bytes) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "baseline.onnx").write_bytes(baseline)
    (out / "model.onnx").write_bytes(compressed)
    result.plan.save(out / "plan.json")
    state = {k: v.contiguous() for k, v in bake_pruning(copy.deepcopy(model)).state_dict().items()}
    save_file(state, str(out / "weights.safetensors"))
    (out / "report.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
