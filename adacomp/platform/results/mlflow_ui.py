"""Where a user finds a search in the MLflow UI: deep links, a saved view that opens on the
front with its metric columns, and the Markdown MLflow renders on a run, an experiment and a
registered version.

MLflow 3 opens an experiment in its GenAI view, its runs list collapsed and without metric
columns; a user had to find a toggle and tick eleven columns to see a front. Its UI reads two
things from a link, and both are used here:
- `workflowType=machine_learning` picks the training-runs view;
- `viewStateShareKey=K` loads the view saved in the experiment's tag `mlflow.sharedViewState.K`
  (what the UI's own "Share" button writes): the filter, the sort, the selected columns, the
  expanded parent.
Links inside descriptions are relative (`#/experiments/...`): they work on whatever host and
port the UI is served from. Pure functions; `tracking.py` writes what they return.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from adacomp.platform.results.display import display_unit, display_value, number
from adacomp.platform.search_config import UNITS

FRONT_TAG = "adacomp.pareto"  # "true" on a search's trials that are on its Pareto front
UTILITY_SHOWN = "utility score"  # the utility rounded, beside the display metrics
FRONT_VIEW_TAG = "adacomp.front_view"  # on a search's run: the key of its front's saved view
ML_VIEW = {"workflowType": "machine_learning"}
SHARED_VIEW_TAG = "mlflow.sharedViewState."  # the UI's "Share" button saves views under this prefix
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # the UI's own word for what an experiment holds
EXPERIMENT_KIND = "custom_model_development"
NOTE_TAG = "mlflow.note.content"  # a run's or an experiment's description, rendered as Markdown
CHAMPION_ALIAS = "champion"  # MLflow's conventional alias for the version to deploy
DEFAULT_UI = "http://127.0.0.1:5000"  # where `adacomp ui` serves by default


# --- links ---------------------------------------------------------------------------------------
def _hash_path(*parts: str) -> str:
    return "#/" + "/".join(quote(p, safe="") for p in parts)


def run_path(experiment_id: str, run_id: str) -> str:
    """A run's page, relative to the UI's root (usable inside Markdown the UI renders)."""
    return f"{_hash_path('experiments', experiment_id, 'runs', run_id)}?{urlencode(ML_VIEW)}"


def artifact_path(experiment_id: str, run_id: str, artifact: str) -> str:
    """A run's artifact, opened in the artifact viewer."""
    base = _hash_path("experiments", experiment_id, "runs", run_id, "artifactPath")
    return f"{base}/{quote(artifact)}?{urlencode(ML_VIEW)}"


def model_version_path(name: str, version: str) -> str:
    return f"{_hash_path('models', name, 'versions', version)}?{urlencode(ML_VIEW)}"


def runs_path(experiment_id: str, view_key: str | None = None, search_filter: str | None = None) -> str:
    """The experiment's training runs: in the saved view of `view_key`, or filtered by
    `search_filter` (a running search has no saved view yet). Never both: the UI ignores a saved
    view when the link also filters."""
    query = dict(ML_VIEW)
    if view_key:
        query["viewStateShareKey"] = view_key
    elif search_filter:
        query["searchFilter"] = search_filter
    return f"{_hash_path('experiments', experiment_id, 'runs')}?{urlencode(query)}"


def absolute(ui: str, path: str) -> str:
    """`path` (one of the relative links above) on the UI served at `ui`."""
    return f"{ui.rstrip('/')}/{path}"


# --- the front's saved view ------------------------------------------------------------------------
def front_filter() -> str:
    return f"tags.`{FRONT_TAG}` = 'true'"


def front_view(metric_keys: Sequence[str], parent_id: str) -> dict[str, Any]:
    """The runs list a user wants first: the front's trials, best utility first, with their
    objectives, accuracy, storage and utility as columns, the search's parent run expanded."""
    wanted = dict.fromkeys(display_name(k) for k in (*metric_keys, "accuracy", "storage", "utility"))
    return {
        "searchFilter": front_filter(),
        "orderByKey": f"metrics.`{UTILITY_SHOWN}`",
        "orderByAsc": False,
        "selectedColumns": [f"metrics.`{key}`" for key in wanted] + ["params.`plan`"],
        "runsExpanded": {parent_id: True},
    }


def display_name(key: str) -> str:
    """`storage` -> `storage in KiB`: a display metric's name. MLflow allows no brackets or `%`
    in metric names, so the unit is spelt out. The utility has no unit: `utility score`."""
    if key == "utility":
        return UTILITY_SHOWN
    kind = metric_kind(key)
    unit = display_unit(kind) if kind else ""
    return f"{key} in {'percent' if unit == '%' else unit}" if unit else key


def is_display_metric(key: str) -> bool:
    return " in " in key or key == UTILITY_SHOWN


def view_key(view: Mapping[str, Any]) -> str:
    """A stable key for a saved view: the same view saved twice is one tag."""
    text = json.dumps(view, sort_keys=True, separators=(",", ":"))
    return "adacomp-" + hashlib.sha256(text.encode()).hexdigest()[:16]


# --- Markdown --------------------------------------------------------------------------------------
def metric_kind(key: str) -> str | None:
    """`latency_pixel4` -> `latency`: which metric a key measures (None: no unit, e.g. utility)."""
    if key in UNITS:
        return key
    head = key.split("_", 1)[0]
    return head if head in UNITS else None


def header(key: str) -> str:
    """`storage` -> `storage (KiB)`: a column's name with its display unit."""
    kind = metric_kind(key)
    unit = display_unit(kind) if kind else ""
    return f"{key} ({unit})" if unit else key


def _rounded(key: str, value: float) -> float:
    kind = metric_kind(key)
    if kind is None:
        return round(value, 4)
    shown = display_value(kind, value)
    return round(shown, {"accuracy": 2, "accuracy_drop": 2, "storage": 1}.get(kind, 3))


def cell(key: str, value: float | None) -> str:
    """A metric rounded in its display unit: accuracy in %, storage in KiB, times in ms."""
    if value is None or not math.isfinite(value):
        return "-"
    if key == "utility":
        return f"{value:.4f}"
    if metric_kind(key) in ("accuracy", "accuracy_drop"):  # points: two decimals, always
        return f"{_rounded(key, value):.2f}"
    return number(_rounded(key, value))


def display_metrics(metrics: Mapping[str, float | None], utility: float | None = None) -> dict[str, float]:
    """Each metric with a unit again under its display name, rounded: `accuracy in percent`
    97.25, `storage in KiB` 609.0, `latency_host in ms` 0.412, and `utility score`. MLflow's runs
    list shows metrics as logged; these are the columns a user reads (the raw ones stay, for
    tools and for resuming)."""
    values = {**metrics, "utility": utility if utility is not None else metrics.get("utility")}
    return {
        display_name(key): _rounded(key, value)
        for key, value in values.items()
        if (metric_kind(key) is not None or key == "utility") and value is not None and math.isfinite(value)
    }


def escape(text: str) -> str:
    """Text safe inside a Markdown table cell (no pipe ends the cell, no newline the row)."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table (what MLflow's Markdown renderer draws as a table)."""
    numeric = [h != "trial" and h != "plan" for h in headers]
    lines = [
        "| " + " | ".join(escape(h) for h in headers) + " |",
        "|" + "|".join("---:" if n else ":---" for n in numeric) + "|",
    ]
    lines += ["| " + " | ".join(escape(c) if i else c for i, c in enumerate(row)) + " |" for row in rows]
    return "\n".join(lines)


def front_table(
    rows: Sequence[Mapping[str, Any]],
    *,
    trial_links: Mapping[str, str] | None = None,
    best: str | None = None,
    plan: bool = True,
) -> str:
    """`front_rows(...)` as Markdown: metrics in display units, full plans, each trial linked
    where `trial_links` (trial -> link) has it, the best by utility marked with ★."""
    if not rows:
        return "_no trial on the front yet_"
    metric_keys = [k for k in rows[0] if k not in ("trial", "plan", "plan_hash", "utility")]
    keys = [k.split(" (")[0] for k in metric_keys]
    headers = ["trial", *(header(k) for k in keys), "utility", *(["plan"] if plan else [])]
    body = []
    for row in rows:
        trial = str(row["trial"])
        label = "uncompressed" if trial == "baseline" else trial
        link = (trial_links or {}).get(trial)
        first = f"[{escape(label)}]({link})" if link else escape(label)
        if best is not None and trial == best:
            first += " ★"
        values = [cell(k, row[m]) for k, m in zip(keys, metric_keys, strict=True)]
        body.append([first, *values, cell("utility", row["utility"]), *([str(row["plan"])] if plan else [])])
    return markdown_table(headers, body)
