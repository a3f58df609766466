"""The polish at the end of a search: the front's plans fine-tuned again, longer and distilled.

A search's trials are fine-tuned briefly (and in stages, most stopped early): enough to rank
plans, not what a user ships. Here the plans on the front (the best `polish.top_k` by utility
when there are more; in supernet mode, spread along the front, reaching past the accuracy
constraint by `polish.headroom`: see `polish_candidates`) are compressed again from the
uncompressed weights (in supernet mode: extracted from the supernet, whose weights start far
closer), fine-tuned with the polish budget (distilled from the uncompressed model by default),
exported, evaluated and measured again, in the driver (which has the model, the farm and every
core to train with; a Ray worker per plan would first pay seconds of imports). Each result is
appended to `polished.jsonl` as it comes (a resumed search polishes only what is missing) and
its model kept in `models/polished/`; the search's front, files, registered model and summary
use these numbers (`with_polished`), each trial's child run keeps its own and gains the
polished ones as `polished_*` metrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch

from adacomp.platform.evaluate.pareto import non_dominated
from adacomp.platform.evaluate.trial import TrialContext, TrialResult, evaluate_plan
from adacomp.platform.results.front import minimised, objective_vector, pareto_front
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
    """A fine-tune search: the front, or its best `top_k` by utility (ties: the earlier trial).

    A supernet search's trials were never fine-tuned, so their accuracy is what the polish
    recovers (MobileNetV2: 2-3 pt in 300 steps), and ranking them by a utility that weighs it
    would spend the polish on the least compressed plans. Its candidates are the front of the
    plans that meet every constraint but accuracy and miss that one by at most
    `polish.headroom` points (`recoverable`), and `top_k` of them are spread evenly along each
    of the front's cost objectives in turn (`spread_along`): along latency alone, the smallest
    plans (weight-only int8 is small and no faster) would never be polished."""
    if config.evaluation != "supernet":
        front = pareto_front(config, records)
        return sorted(front, key=_by_utility)[: config.polish.top_k]
    pool = [r for r in records if recoverable(config, r)]
    front = [pool[i] for i in non_dominated([minimised(config, r.metrics) for r in pool])]
    costs = [o.key for o in config.objectives if o.mode == "min"]
    if not costs:
        return sorted(front, key=_by_utility)[: config.polish.top_k]
    return spread_along(front, costs, config.polish.top_k)


def spread_along(front: Sequence[TrialRecord], costs: Sequence[str], k: int) -> list[TrialRecord]:
    """`k` plans of `front`: each cost's evenly spaced picks (`spread`, its cheapest and its
    dearest end first), taken in turn from each cost and each plan once, with as few picks per
    cost as fill `k` (where the costs agree on a plan, each cost gives more)."""
    if k <= 0 or not front:
        return []
    orders = [sorted(front, key=partial(_by_cost, cost)) for cost in costs]
    chosen: dict[int, TrialRecord] = {}
    for per_cost in range(min(len(front), -(-k // len(costs))), len(front) + 1):
        chosen = {}
        for turn in zip(*(spread(order, per_cost) for order in orders), strict=True):
            chosen.update((r.number, r) for r in turn if r.number not in chosen)
        if len(chosen) >= k:
            break
    return list(chosen.values())[:k]


def _by_cost(cost: str, record: TrialRecord) -> tuple[float, int]:
    return (float(record.metrics[cost] or 0.0), record.number)


def _by_utility(record: TrialRecord) -> tuple[float, int]:
    return (-(record.utility if record.utility is not None else -math.inf), record.number)


def recoverable(config: SearchConfig, record: TrialRecord) -> bool:
    """Measured on every objective, every constraint met but the accuracy ones, and those
    missed by at most `polish.headroom` points: what a fine-tune may bring within them."""
    if record.failed or record.stopped_at is not None or record.duplicate_of is not None:
        return False
    if objective_vector(config, record.metrics) is None:
        return False
    for constraint, violation in zip(config.constraints, record.violations, strict=False):
        allowed = 0.0
        if constraint.metric == "accuracy_drop":
            allowed = config.polish.headroom
        elif constraint.metric == "accuracy":
            allowed = config.polish.headroom / 100.0  # accuracy is a fraction
        if violation > allowed:
            return False
    return True


def spread(ordered: Sequence[TrialRecord], k: int) -> list[TrialRecord]:
    """`k` of `ordered` evenly spaced from its first to its last, ends first, then the middle."""
    if k <= 0 or not ordered:
        return []
    if k >= len(ordered):
        picks = list(range(len(ordered)))
    else:
        picks = [round(i * (len(ordered) - 1) / max(1, k - 1)) for i in range(k)]
    ends = [picks[0], picks[-1]]
    order = list(dict.fromkeys([*ends, *picks[1:-1]]))
    return [ordered[i] for i in order][:k]


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
