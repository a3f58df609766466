"""The polish at the end of a search: the front's plans fine-tuned again, longer and distilled.

A search's trials are fine-tuned briefly (and in stages, most stopped early): enough to rank
plans, not what a user ships. Here the plans on the front (the best `polish.top_k` by utility
when there are more) are compressed again from the uncompressed weights (in supernet mode:
extracted from the supernet, whose weights start far closer), fine-tuned with the
polish budget (distilled from the uncompressed model by default), exported, evaluated and
measured again, in the driver (which has the model, the farm and every core to train with; a
Ray worker per plan would first pay seconds of imports). Each result is appended to
`polished.jsonl` as it comes (a resumed search polishes only what is missing) and its model
kept in `models/polished/`; the search's front, files, registered model and summary use these
numbers (`with_polished`), each trial's child run keeps its own and gains the polished ones as
`polished_*` metrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import torch

from adacomp.platform.evaluate.trial import TrialContext, TrialResult, evaluate_plan
from adacomp.platform.results.front import pareto_front
from adacomp.platform.results.ledger import Ledger, TrialRecord
from adacomp.platform.results.snapshot import POLISHED_FILE, polished_model_file
from adacomp.platform.search_config import Fidelity, Finetune, SearchConfig
from adacomp.search_spaces import CompressionPlan
from adacomp.tasks._base import dataset_len


def polish_config(config: SearchConfig, ctx: TrialContext) -> SearchConfig:
    """What a polish evaluates under: its budget (default three times the trials' fine-tune),
    in one stage, every plan trained (a cost-infeasible plan is never on a front anyway)."""
    p = config.polish
    steps, epochs = p.steps, p.epochs
    if steps is None and epochs is None:
        budget = ctx.finetune_budget()
        base = budget.num_steps(dataset_len(ctx.task.data.train)) if budget is not None else 0
        steps = max(1, 3 * base)
    return config.model_copy(
        update={
            "finetune": Finetune(steps=steps, epochs=epochs, distill=p.distill),
            "fidelity": Fidelity(rungs=1),
            "cost_first": False,
        }
    )


def polish_candidates(config: SearchConfig, records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The front, or its best `top_k` by utility (ties: the earlier trial).

    In supernet mode the front's extremes come first: the best plan on each cost objective
    (the fastest, the smallest), then the rest by utility. Its trials were never fine-tuned, so
    their accuracy is what the polish recovers (MobileNetV2: 1.5-2 pt in 300 steps): ranked by
    a utility that weighs that accuracy, the polish would spend itself on the least compressed
    plans, and the fastest ones, near the accuracy floor before it, would never be tried."""
    front = pareto_front(config, records)
    ranked = sorted(front, key=lambda r: (-(r.utility if r.utility is not None else -math.inf), r.number))
    if config.evaluation == "supernet":
        extremes = [_best_on(front, o.key) for o in config.objectives if o.mode == "min"]
        ranked = list({r.number: r for r in [*extremes, *ranked] if r is not None}.values())
    return ranked[: config.polish.top_k]


def _best_on(front: Sequence[TrialRecord], key: str) -> TrialRecord | None:
    """The plan of the front lowest on `key` (ties: the earlier trial)."""
    known = [r for r in front if isinstance(r.metrics.get(key), int | float)]
    return min(known, key=lambda r: (float(r.metrics[key] or 0.0), r.number)) if known else None


# The weights a plan's polish starts from (None: compress's own, from the uncompressed model).
StartingWeights = Callable[[CompressionPlan], Mapping[str, torch.Tensor] | None]


def polish_front(
    config: SearchConfig,
    ctx: TrialContext,
    records: Sequence[TrialRecord],
    out_dir: Path,
    say: Callable[[str], None],
    start: StartingWeights | None = None,
) -> list[TrialRecord]:
    """Polishes what the front lacks and returns every polished record of this search; in
    supernet mode `start` gives each plan the supernet's weights to fine-tune from."""
    ledger: Ledger[TrialRecord] = Ledger(out_dir / POLISHED_FILE)
    done = {r.number: r for r in ledger.load()}
    todo = [r for r in polish_candidates(config, records) if r.number not in done]
    if not todo:
        return list(done.values())
    settings = polish_config(config, ctx)
    budget = settings.finetune
    say(
        f"polishing {len(todo)} plans of the front: "
        + (f"{budget.steps} fine-tune steps" if budget.steps is not None else f"{budget.epochs} epochs")
        + (", distilled from the uncompressed model" if budget.distill else "")
        + (", starting from the supernet's weights" if start is not None else "")
    )
    polish_ctx = replace(ctx, config=settings)
    for record in todo:
        initial = start(record.plan) if start is not None else None
        result = evaluate_plan(polish_ctx, record.plan, seed=config.seed + record.number, initial=initial)
        polished = _polished(record, result, out_dir, say)
        if polished is not None:
            ledger.append(polished)  # at once: a kill loses at most the plan being polished
            done[polished.number] = polished
    return list(done.values())


def _polished(
    record: TrialRecord, result: TrialResult, out_dir: Path, say: Callable[[str], None]
) -> TrialRecord | None:
    if result.failed or result.onnx_model is None:
        say(f"polish of trial {record.number} failed ({result.reason}); its search numbers stand")
        return None
    path = polished_model_file(out_dir, record.plan)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(result.onnx_model)
    polished = replace(TrialRecord.from_result(record.number, result), polished=True)
    before, after = record.metrics.get("accuracy"), polished.metrics.get("accuracy")
    if isinstance(before, float) and isinstance(after, float):
        say(f"trial {record.number} polished: accuracy {100 * before:.2f}% -> {100 * after:.2f}%")
    return polished
