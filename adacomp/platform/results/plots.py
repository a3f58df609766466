"""Pareto plots of a search: a PNG (matplotlib) and an interactive HTML page (plotly).

The first objective (usually accuracy) is plotted against each of the others, in display units
(display.py: accuracy in %, storage in KiB or MiB): the front joined in colour, the other
feasible trials in grey, infeasible ones as red crosses, the uncompressed baseline as a star
whose label says which constraint it breaks, and each constraint on a plotted metric as a
dashed line at its limit. `pareto_view` decides what both plots draw, so the PNG and the page
say the same things in the same words.

The HTML page embeds plotly.js, so it opens offline and inside the MLflow UI. Its hover label is
one short line per value and per compressed layer (the first `PLAN_LAYERS`), narrow enough for
MLflow's artifact viewer (an iframe about 1,000 px wide).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from adacomp.platform.evaluate.objectives import utility as utility_of
from adacomp.platform.results.display import (
    StorageUnit,
    axis_title,
    display_unit,
    display_value,
    limits,
    number,
    storage_unit,
    violated,
)
from adacomp.platform.results.front import objective_vector, pareto_front
from adacomp.platform.results.ledger import TrialRecord
from adacomp.platform.search_config import Objective, SearchConfig
from adacomp.search_spaces import CompressionPlan

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Metrics = Mapping[str, float | None]
Kind = Literal["front", "feasible", "infeasible", "stopped", "baseline"]

# The legend's words, the same on the PNG, the HTML page and the supernet's device plots.
FRONT = "Pareto front"
FEASIBLE = "other feasible trials"
INFEASIBLE = "infeasible"
STOPPED = "stopped early"  # multi-fidelity: fine-tuned only in part, never on a front
BASELINE = "uncompressed"
LABELS: dict[Kind, str] = {
    "front": FRONT,
    "feasible": FEASIBLE,
    "infeasible": INFEASIBLE,
    "stopped": STOPPED,
    "baseline": BASELINE,  # the plots add why it is infeasible, when it is
}

DRAW_ORDER: tuple[Kind, ...] = ("feasible", "stopped", "infeasible", "front", "baseline")  # last on top
PLAN_LAYERS = 12  # layers a hover label lists before "… N more layers"
LINE_CHARS = 72  # longest plan line of a hover label; a longer one is cut with "…"
MISSING = "n/a"
LIMIT_COLOUR = "#555555"
_PNG_STYLE: dict[Kind, dict[str, Any]] = {
    "front": {"c": "tab:blue", "ms": 6, "zorder": 3},
    "feasible": {"marker": "o", "c": "0.6", "s": 22, "zorder": 2},
    "stopped": {"marker": "o", "facecolors": "none", "edgecolors": "0.6", "s": 22, "zorder": 2},
    "infeasible": {"marker": "x", "c": "tab:red", "s": 22, "zorder": 2},
    "baseline": {"marker": "*", "c": "tab:orange", "s": 180, "zorder": 5},
}
_HTML_MARKER: dict[Kind, dict[str, Any]] = {
    "front": {"color": "#1f77b4", "size": 10},
    "feasible": {"color": "#999999", "size": 7},
    "stopped": {"color": "#999999", "size": 7, "symbol": "circle-open"},
    "infeasible": {"color": "#d62728", "size": 7, "symbol": "x"},
    "baseline": {"color": "#ff7f0e", "size": 16, "symbol": "star"},
}


@dataclass(frozen=True)
class Point:
    trial: str  # "trial 12", or "uncompressed"
    values: tuple[float, ...]  # every objective in display units, in config.objectives order
    metrics: Metrics
    utility: float | None
    plan: CompressionPlan


@dataclass(frozen=True)
class Series:
    kind: Kind
    label: str  # its legend entry, the same on the PNG and the HTML page
    points: tuple[Point, ...]


@dataclass(frozen=True)
class Limit:
    axis: Literal["x", "y"]
    value: float  # display units
    text: str  # e.g. "latency_pixel4 ≤ 20 ms"


@dataclass(frozen=True)
class Panel:
    """One subplot: objective `y` against objective `x` (indices into config.objectives)."""

    x: int
    y: int
    x_title: str
    y_title: str
    limits: tuple[Limit, ...]


@dataclass(frozen=True)
class ParetoView:
    """What both plots draw: series in legend order (the empty ones left out), one panel each pair."""

    config: SearchConfig
    storage: StorageUnit
    title: str
    series: tuple[Series, ...]
    panels: tuple[Panel, ...]
    baseline_violations: tuple[str, ...]  # e.g. "latency_pixel4 12.1 ms > 10 ms"


def pareto_view(config: SearchConfig, records: Sequence[TrialRecord], baseline: Metrics) -> ParetoView:
    storage = storage_unit(baseline, (r.metrics.get("storage") for r in records))
    front = pareto_front(config, records)
    on_front = {r.number for r in front}
    groups: dict[Kind, list[TrialRecord]] = {"front": front, "feasible": [], "infeasible": [], "stopped": []}
    for record in records:
        if not record.failed and record.number not in on_front:
            groups[_kind(record)].append(record)
    series = []
    for kind, group in groups.items():
        points = [
            point
            for r in group
            if (point := _point(config, storage, f"trial {r.number}", r.metrics, r.utility, r.plan))
        ]
        if points:
            series.append(Series(kind, LABELS[kind], tuple(points)))
    broken = violated(config, baseline, storage)
    base_utility = utility_of(config, baseline, baseline)
    base = _point(config, storage, BASELINE, baseline, base_utility, CompressionPlan())
    if base is not None:
        label = f"{BASELINE} (infeasible: {', '.join(broken)})" if broken else BASELINE
        series.append(Series("baseline", label, (base,)))
    return ParetoView(
        config=config,
        storage=storage,
        title=f"{config.name}: {len(front)} on the front of {len(records)} trials",
        series=tuple(series),
        panels=tuple(_panel(config, storage, i, j) for i, j in _pairs(config)),
        baseline_violations=tuple(broken),
    )


def _kind(record: TrialRecord) -> Kind:
    if record.feasible:
        return "feasible"
    return "stopped" if record.stopped_at is not None else "infeasible"


def _pairs(config: SearchConfig) -> list[tuple[int, int]]:
    """The first objective against each other one (itself, when it is the only one)."""
    return [(0, j) for j in range(1, len(config.objectives))] or [(0, 0)]


def _point(
    config: SearchConfig,
    storage: StorageUnit,
    trial: str,
    metrics: Metrics,
    utility: float | None,
    plan: CompressionPlan,
) -> Point | None:
    """The point, every objective in display units; None when an objective is missing."""
    vector = objective_vector(config, metrics)
    if vector is None:
        return None
    values = tuple(
        display_value(o.metric, v, storage) for o, v in zip(config.objectives, vector, strict=True)
    )
    return Point(trial, values, metrics, utility, plan)


def _panel(config: SearchConfig, storage: StorageUnit, i: int, j: int) -> Panel:
    x, y = config.objectives[j], config.objectives[i]
    drawn: list[Limit] = []
    axes: tuple[tuple[Literal["x", "y"], Objective], ...] = (("x", x), ("y", y))
    for constraint in config.constraints:
        for axis, objective in axes:
            if constraint.key == objective.key:  # the key feasibility reads (evaluate/objectives.py)
                drawn += [Limit(axis, value, text) for value, text in limits(constraint, storage)]
    return Panel(j, i, axis_title(x, storage), axis_title(y, storage), tuple(drawn))


def _drawn(view: ParetoView) -> list[Series]:
    return sorted(view.series, key=lambda s: DRAW_ORDER.index(s.kind))


def _ordered(series: Series, panel: Panel) -> Sequence[Point]:
    """The front left to right (it is drawn as a line), any other series as it is."""
    return sorted(series.points, key=lambda p: p.values[panel.x]) if series.kind == "front" else series.points


def _xy(points: Sequence[Point], panel: Panel) -> tuple[list[float], list[float]]:
    return [p.values[panel.x] for p in points], [p.values[panel.y] for p in points]


# --- the PNG -------------------------------------------------------------------------------------


def pareto_png_figure(config: SearchConfig, records: Sequence[TrialRecord], baseline: Metrics) -> Figure:
    from matplotlib.figure import Figure

    view = pareto_view(config, records, baseline)
    figure = Figure(figsize=(5.5 * len(view.panels), 5.0))
    axes = figure.subplots(1, len(view.panels), squeeze=False)[0]
    handles: dict[str, Any] = {}
    for ax, panel in zip(axes, view.panels, strict=True):
        for series in _drawn(view):
            xs, ys = _xy(_ordered(series, panel), panel)
            if series.kind == "front":
                (handles[series.label],) = ax.plot(xs, ys, "-o", **_PNG_STYLE["front"])
            else:
                handles[series.label] = ax.scatter(xs, ys, **_PNG_STYLE[series.kind])
        for limit in panel.limits:
            _png_limit(ax, limit)
        ax.set_xlabel(panel.x_title)
        ax.set_ylabel(panel.y_title)
        ax.grid(alpha=0.3)
    labels = [s.label for s in view.series]
    columns = 2 if len(view.panels) == 1 else 3
    rows = -(-len(labels) // columns)
    figure.legend([handles[label] for label in labels], labels, loc="lower center", ncol=columns, fontsize=8)
    figure.suptitle(view.title)
    figure.tight_layout(rect=(0, 0.02 + 0.045 * rows, 1, 1))
    return figure


def _png_limit(ax: Axes, limit: Limit) -> None:
    style: dict[str, Any] = {"ls": "--", "lw": 1, "c": LIMIT_COLOUR, "zorder": 1}
    text: dict[str, Any] = {"fontsize": 7, "color": LIMIT_COLOUR}
    if limit.axis == "x":
        ax.axvline(limit.value, **style)
        ax.text(
            limit.value,
            0.98,
            limit.text,
            transform=ax.get_xaxis_transform(),
            rotation=90,
            ha="right",
            va="top",
            **text,
        )
    else:
        ax.axhline(limit.value, **style)
        ax.text(
            0.99, limit.value, limit.text, transform=ax.get_yaxis_transform(), ha="right", va="bottom", **text
        )


def pareto_png(config: SearchConfig, records: Sequence[TrialRecord], baseline: Metrics, path: Path) -> Path:
    pareto_png_figure(config, records, baseline).savefig(path, dpi=110)
    return path


# --- the HTML page -------------------------------------------------------------------------------


def hover_fields(config: SearchConfig) -> list[tuple[str, str]]:
    """(metric, key) of each value a hover label shows: accuracy, latency on every target,
    storage, and accuracy drop, energy and memory where an objective or constraint names them."""
    named = {o.key for o in config.objectives} | {c.key for c in config.constraints}
    fields = [("accuracy", "accuracy")]
    if "accuracy_drop" in named:
        fields.append(("accuracy_drop", "accuracy_drop"))
    for target in config.targets:
        fields += [
            (m, f"{m}_{target}")
            for m in ("latency", "energy", "memory")
            if m == "latency" or f"{m}_{target}" in named
        ]
    return [*fields, ("storage", "storage")]


def hover_template(config: SearchConfig, storage: StorageUnit) -> str:
    """One line per value, the unit in the template and the number in `customdata`."""
    fields = hover_fields(config)
    lines = ["%{customdata[0]}"]
    lines += [
        f"{key} %{{customdata[{n}]}} {display_unit(metric, storage)}"
        for n, (metric, key) in enumerate(fields, 1)
    ]
    lines += [f"utility %{{customdata[{len(fields) + 1}]}}", f"%{{customdata[{len(fields) + 2}]}}"]
    return "<br>".join(lines) + "<extra></extra>"  # <extra></extra>: no trace-name box beside it


def plan_lines(plan: CompressionPlan, layers: int = PLAN_LAYERS, width: int = LINE_CHARS) -> list[str]:
    """The plan one layer a line, as MLflow logs it (`layer: step -> step`), the first `layers` only."""
    if not plan:
        return ["plan: none (uncompressed)"]
    lines = [f"plan, {len(plan)} layer{'s' * (len(plan) != 1)}:"]
    for layer, steps in list(plan)[:layers]:
        line = f"{layer}: {' -> '.join(map(str, steps))}"
        lines.append(line if len(line) <= width else line[: width - 1] + "…")
    if len(plan) > layers:
        lines.append(f"… {len(plan) - layers} more layers")
    return lines


def hover_data(view: ParetoView, series: Series, point: Point) -> list[str]:
    """A point's `customdata`, in `hover_template`'s order."""
    if series.kind == "baseline":
        head = "<br>".join([f"<b>{BASELINE}</b>", *(f"infeasible: {v}" for v in view.baseline_violations)])
    else:
        head = f"<b>{point.trial}</b> · {series.label}"
    values = [
        MISSING if (v := point.metrics.get(key)) is None else number(display_value(metric, v, view.storage))
        for metric, key in hover_fields(view.config)
    ]
    utility = MISSING if point.utility is None else f"{point.utility:.4f}"
    return [head, *values, utility, "<br>".join(plan_lines(point.plan))]


def pareto_figure(config: SearchConfig, records: Sequence[TrialRecord], baseline: Metrics) -> go.Figure:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    view = pareto_view(config, records, baseline)
    figure = make_subplots(rows=1, cols=len(view.panels))
    template = hover_template(config, view.storage)
    rank = {s.kind: n for n, s in enumerate(view.series, 1)}
    for col, panel in enumerate(view.panels, start=1):
        for series in _drawn(view):
            points = _ordered(series, panel)
            xs, ys = _xy(points, panel)
            trace = go.Scatter(
                x=xs,
                y=ys,
                mode="lines+markers" if series.kind == "front" else "markers",
                name=series.label,
                legendgroup=series.kind,
                legendrank=rank[series.kind],
                showlegend=col == 1,
                marker=_HTML_MARKER[series.kind],
                customdata=[hover_data(view, series, p) for p in points],
                hovertemplate=template,
            )
            figure.add_trace(trace, row=1, col=col)
        for limit in panel.limits:
            line: dict[str, Any] = {
                "line_dash": "dash",
                "line_width": 1,
                "line_color": LIMIT_COLOUR,
                "annotation_text": limit.text,
                "annotation_font": {"size": 10, "color": LIMIT_COLOUR},
                "row": 1,
                "col": col,
            }
            if limit.axis == "x":
                figure.add_vline(x=limit.value, annotation_position="top left", **line)
            else:
                figure.add_hline(y=limit.value, annotation_position="bottom right", **line)
        figure.update_xaxes(title_text=panel.x_title, row=1, col=col)
        figure.update_yaxes(title_text=panel.y_title, row=1, col=col)
    figure.update_layout(
        title=view.title,
        template="plotly_white",
        hoverlabel={"align": "left", "font": {"size": 12}},
        # Below the plots: the baseline's label can be long, and the page sits in a narrow iframe.
        legend={"orientation": "h", "yanchor": "top", "y": -0.2, "xanchor": "left", "x": 0},
        margin={"b": 120},
    )
    return figure


def pareto_html(config: SearchConfig, records: Sequence[TrialRecord], baseline: Metrics, path: Path) -> Path:
    pareto_figure(config, records, baseline).write_html(path, include_plotlyjs=True, full_html=True)
    return path


# --- the supernet's plot per device --------------------------------------------------------------


def device_front_figure(
    records: Sequence[Any], front: Sequence[Any], baseline: Metrics, device: str
) -> Figure:
    """Accuracy (%) against latency (ms) on one device: every configuration, the front, the baseline."""
    from matplotlib.figure import Figure

    key = f"latency_{device}"
    on_front = {r.number for r in front}

    def xy(rows: Sequence[Any]) -> tuple[list[float], list[float]]:
        return [r.metrics[key] for r in rows], [
            display_value("accuracy", r.metrics["accuracy"]) for r in rows
        ]

    measured = [r for r in records if not r.failed and key in r.metrics and r.number not in on_front]
    fig = Figure(figsize=(6, 4.2), dpi=110)
    ax = fig.subplots()
    ax.scatter(*xy([r for r in measured if not r.feasible]), s=14, marker="x", c="tab:red", label=INFEASIBLE)
    ax.scatter(*xy([r for r in measured if r.feasible]), s=18, c="0.6", label=FEASIBLE)
    ax.plot(*xy(front), "o-", c="tab:blue", label=FRONT)
    if baseline.get(key) is not None and baseline.get("accuracy") is not None:
        x, y = float(baseline[key] or 0), display_value("accuracy", float(baseline["accuracy"] or 0))
        ax.scatter([x], [y], marker="*", s=140, c="tab:orange", label=BASELINE, zorder=5)
    ax.set_xlabel(axis_title(Objective(metric="latency", target=device)))
    ax.set_ylabel(axis_title(Objective(metric="accuracy")))
    ax.set_title(f"supernet configurations on {device}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def device_front_png(
    records: Sequence[Any], front: Sequence[Any], baseline: Metrics, device: str, out_dir: Path
) -> Path:
    path = out_dir / f"pareto_{device}.png"
    device_front_figure(records, front, baseline, device).savefig(path)
    return path
