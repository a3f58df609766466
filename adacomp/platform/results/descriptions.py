"""What a search says about itself in Markdown: `front.md`, the parent run's description, the
registered version's description and the experiment's. Pure: a snapshot in, text out.

Each one answers what a user opening it asks first: which trials made the front and at what
cost, which one was registered and why, what the hypervolume's number means.
"""

from __future__ import annotations

from collections.abc import Mapping

from adacomp.platform.results.front import front_rows, normalised_hypervolume
from adacomp.platform.results.ledger import TrialRecord
from adacomp.platform.results.mlflow_ui import (
    CHAMPION_ALIAS,
    artifact_path,
    cell,
    escape,
    front_table,
    header,
    markdown_table,
    model_version_path,
    run_path,
    runs_path,
)
from adacomp.platform.results.snapshot import SearchSnapshot
from adacomp.search_spaces import CompressionPlan

PLOTS = ("pareto/pareto.html", "pareto/pareto.png", "pareto/front.md")


def _best_number(snapshot: SearchSnapshot) -> str | None:
    best = snapshot.best
    return None if best is None else str(best.number)


def _trials_line(snapshot: SearchSnapshot) -> str:
    records = snapshot.records
    failed = sum(r.failed for r in records)
    return (
        f"{len(records)} trials ({failed} failed), {len(snapshot.front_records)} on the Pareto front "
        f"(feasible under every constraint, none better on all objectives)."
    )


def hypervolume_note(snapshot: SearchSnapshot) -> str:
    """The hypervolume with its scale: the reference point, and what the uncompressed model
    alone would score, so 2.25 reads as "2.25 times what not compressing gives"."""
    config, baseline = snapshot.config, snapshot.baseline
    alone = TrialRecord(number=-1, plan=CompressionPlan(), metrics=baseline, utility=None, violations=())
    baseline_volume = normalised_hypervolume(config, [alone], baseline)
    reference = []
    for objective in config.objectives:
        if objective.metric == "accuracy_drop":
            reference.append(f"{objective.key} 100 pt")
        elif objective.mode == "max":
            reference.append(f"{objective.key} 0")
        else:
            reference.append(f"{objective.key} twice the uncompressed model's")
    return (
        f"Hypervolume {snapshot.hypervolume:.4f}: the part of objective space the front dominates, "
        "each objective divided by the uncompressed model's value, measured from the reference point "
        f"({', '.join(reference)}). The uncompressed model alone scores {baseline_volume:.4f}; "
        "larger is better."
    )


def front_markdown(snapshot: SearchSnapshot) -> str:
    """`front.md`: the front as a Markdown table with full plans (baseline first)."""
    rows = front_rows(snapshot.config, snapshot.records, snapshot.baseline)
    return "\n\n".join(
        [
            f"# Pareto front of `{snapshot.config.name}`",
            _trials_line(snapshot),
            front_table(rows, best=_best_number(snapshot)),
            "★ best feasible trial by the usage's utility (the one the search registers).",
            hypervolume_note(snapshot),
        ]
    )


def search_description(
    snapshot: SearchSnapshot,
    experiment_id: str,
    children: Mapping[int, str],
    view_key: str | None,
    registered: str | None,
) -> str:
    """The parent run's description: where the result is, then the front with every trial linked."""
    assert snapshot.run_id is not None
    rows = front_rows(snapshot.config, snapshot.records, snapshot.baseline)
    links = {str(n): run_path(experiment_id, run_id) for n, run_id in children.items()}
    lines = [f"**{escape(snapshot.config.name)}**: {_trials_line(snapshot)}"]
    best = snapshot.best
    if best is not None:
        trial = (
            f"[trial {best.number}]({links[str(best.number)]})"
            if str(best.number) in links
            else (f"trial {best.number}")
        )
        chosen = f"Best feasible by the usage's utility: {trial} (utility {cell('utility', best.utility)})"
        if registered:
            name, version = registered.removeprefix("models:/").rsplit("/", 1)
            chosen += (
                f", registered as [{escape(name)} version {version}]({model_version_path(name, version)})"
                f" with the alias `{CHAMPION_ALIAS}`"
            )
        lines.append(chosen + ".")
    else:
        lines.append("No feasible trial: loosen the constraints or give the search more trials.")
    views = [f"[the front's runs]({runs_path(experiment_id, view_key)})"] if view_key else []
    views += [f"[{p.split('/')[-1]}]({artifact_path(experiment_id, snapshot.run_id, p)})" for p in PLOTS]
    lines.append(front_table(rows, trial_links=links, best=_best_number(snapshot)))
    lines.append("Open: " + " · ".join(views))
    lines.append("★ best by utility. " + hypervolume_note(snapshot))
    return "\n\n".join(lines)


def version_description(
    snapshot: SearchSnapshot, record: TrialRecord, experiment_id: str, run_id: str
) -> str:
    """The registered version's description: where it came from, its metrics on every device
    beside the uncompressed model's, and its plan one layer per line."""
    keys = sorted(k for k, v in record.metrics.items() if v is not None)
    rows = [[header(k), cell(k, record.metrics.get(k)), cell(k, snapshot.baseline.get(k))] for k in keys]
    table = markdown_table(["metric", "this model", "uncompressed"], rows)
    plan = "\n".join(f"- `{layer}`: {' → '.join(map(str, steps))}" for layer, steps in record.plan)
    polished = " (numbers after the search's polish)" if record.polished else ""
    return "\n\n".join(
        [
            f"[Trial {record.number}]({run_path(experiment_id, run_id)}) of search "
            f"`{escape(snapshot.config.name)}`: the best feasible trial by the usage's utility "
            f"({cell('utility', record.utility)}){polished}.",
            table,
            "Plan, one layer per line:",
            plan or "- (no compression)",
        ]
    )


def experiment_description(experiment: str, latest: SearchSnapshot, experiment_id: str, view_key: str) -> str:
    return "\n\n".join(
        [
            f"adacomp searches of `{escape(experiment)}`: each search is a parent run, its trials are "
            "child runs; those on the search's Pareto front carry the tag `adacomp.pareto = true`.",
            f"Latest: `{escape(latest.config.name)}`, "
            f"[its front's runs]({runs_path(experiment_id, view_key)})"
            + (f" · [the search run]({run_path(experiment_id, latest.run_id)})" if latest.run_id else "")
            + ".",
            "Columns are in display units: accuracy in %, storage in KiB, latency in ms, energy in mJ.",
        ]
    )
