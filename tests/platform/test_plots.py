"""The Pareto plots explain the trade-off: a narrow hover label (trial, values in display units,
utility, the plan one layer a line), axes in display units, constraint limits drawn, the
baseline saying why it is infeasible, and the same legend words on the PNG and the HTML page."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from adacomp.platform.evaluate.objectives import constraint_violations
from adacomp.platform.results.display import axis_title, display_value, storage_unit
from adacomp.platform.results.ledger import TrialRecord
from adacomp.platform.results.plots import (
    BASELINE,
    FEASIBLE,
    FRONT,
    INFEASIBLE,
    device_front_figure,
    pareto_figure,
    pareto_html,
    pareto_png,
    pareto_png_figure,
    pareto_view,
    plan_lines,
)
from adacomp.platform.search_config import Objective, SearchConfig
from adacomp.platform.supernet.search import SubnetRecord
from adacomp.search_spaces import CompressionPlan, Step
from adacomp.search_spaces.supernet.arch import SubnetConfig

CONFIG = SearchConfig.model_validate(
    {
        "name": "plots",
        "task": "digits",
        "targets": ["pixel4"],
        "objectives": [
            {"metric": "accuracy"},
            {"metric": "latency", "target": "pixel4"},
            {"metric": "storage"},
        ],
        "constraints": [
            {"metric": "accuracy_drop", "max": 2.0},
            {"metric": "latency", "target": "pixel4", "max": 10.0},
            {"metric": "storage", "max": 200_000},
        ],
    }
)
# Uncompressed: slower than the latency limit allows (and larger than the storage limit).
BASELINE_METRICS = {"accuracy": 0.95, "accuracy_drop": 0.0, "latency_pixel4": 12.1, "storage": 190_000.0}
STEPS = [Step.of("channel_prune", amount=0.25), Step.of("quantize", bits=8)]


def record(number: int, accuracy: float, latency: float, storage: float, layers: int = 2) -> TrialRecord:
    plan = CompressionPlan.from_mapping({f"features.{i}.conv": STEPS for i in range(layers)})
    metrics = {
        "accuracy": accuracy,
        "accuracy_drop": (0.95 - accuracy) * 100,
        "latency_pixel4": latency,
        "storage": storage,
    }
    violations = tuple(constraint_violations(CONFIG, metrics))
    return TrialRecord(number, plan, metrics=metrics, utility=accuracy - latency / 20, violations=violations)


RECORDS = [
    record(0, 0.94, 8.0, 150_000),
    record(1, 0.935, 6.0, 120_000, layers=20),  # on the front, with a long plan
    record(2, 0.93, 9.0, 190_000),  # feasible, dominated by trial 0
    record(3, 0.945, 11.0, 150_000),  # infeasible: latency over the limit
]


def hover_text(trace: Any, point: int) -> str:
    """The label plotly shows: the template with the point's customdata filled in."""
    data = trace.customdata[point]
    text = re.sub(r"%\{customdata\[(\d+)\]\}", lambda m: str(data[int(m[1])]), trace.hovertemplate)
    return text.removesuffix("<extra></extra>")


def trace(figure: Any, name: str, col: int = 1) -> Any:
    xaxis = "x" if col == 1 else f"x{col}"
    return next(t for t in figure.data if t.name.startswith(name) and t.xaxis == xaxis)


def legend(figure: Any) -> list[str]:
    return [t.name for t in sorted((t for t in figure.data if t.showlegend), key=lambda t: t.legendrank)]


def test_values_and_axes_are_in_display_units() -> None:
    assert display_value("accuracy", 0.9123) == pytest.approx(91.23)
    assert display_value("storage", 2048.0) == 2.0
    assert display_value("storage", 3 * 2**20, "MiB") == 3.0
    assert display_value("latency", 12.5) == 12.5
    assert storage_unit({"storage": 10 * 2**20 - 1}) == "KiB"
    assert storage_unit({"storage": 10 * 2**20}) == "MiB"
    assert storage_unit({}, [None, 20 * 2**20]) == "MiB"  # no baseline: the largest trial decides
    titles = [axis_title(o) for o in CONFIG.objectives]
    assert titles == ["accuracy (%)", "latency on pixel4 (ms)", "storage (KiB)"]
    assert axis_title(Objective(metric="storage"), "MiB") == "storage (MiB)"
    assert axis_title(Objective(metric="energy", target="pixel4")) == "energy on pixel4 (mJ)"
    assert axis_title(Objective(metric="memory", target="pixel4")) == "memory on pixel4 (MiB)"


def test_hover_label_is_narrow_one_value_and_one_layer_a_line() -> None:
    figure = pareto_figure(CONFIG, RECORDS, BASELINE_METRICS)
    front = trace(figure, FRONT)
    template = front.hovertemplate
    for unit in (" %", " ms", " KiB"):
        assert unit in template
    assert "utility" in template and template.endswith("<extra></extra>")
    assert front.hoverinfo is None and front.text is None  # customdata, not a text blob

    long_plan = hover_text(front, [d[0] for d in front.customdata].index("<b>trial 1</b> · Pareto front"))
    lines = long_plan.split("<br>")
    assert lines[:6] == [
        "<b>trial 1</b> · Pareto front",
        "accuracy 93.5 %",
        "accuracy_drop 1.5 pt",  # constrained: it says why a trial is infeasible
        "latency_pixel4 6 ms",
        "storage 117.2 KiB",
        f"utility {0.935 - 6 / 20:.4f}",
    ]
    assert lines[6] == "plan, 20 layers:"
    assert lines[7] == "features.0.conv: channel_prune(amount=0.25) -> quantize(bits=8)"
    assert len(lines[7:]) == 12 + 1 and lines[-1] == "… 8 more layers"
    assert max(len(re.sub(r"<[^>]+>", "", line)) for line in lines) < 100


def test_a_long_layer_is_cut_short() -> None:
    steps = [Step.of("low_rank", rank_fraction=0.25)] * 6
    plan = CompressionPlan.from_mapping({"encoder.layers.11.attention.output.dense": steps})
    (head, line) = plan_lines(plan)
    assert head == "plan, 1 layer:" and len(line) == 72 and line.endswith("…")
    assert plan_lines(CompressionPlan()) == ["plan: none (uncompressed)"]


def test_constraint_limits_are_drawn_at_their_display_value() -> None:
    figure = pareto_figure(CONFIG, RECORDS, BASELINE_METRICS)
    lines = {(s.xref, s.x0, s.line.dash) for s in figure.layout.shapes}
    assert lines == {("x", 10.0, "dash"), ("x2", 200_000 / 1024, "dash")}  # accuracy_drop: no axis
    labels = {a.text for a in figure.layout.annotations}
    assert {"latency_pixel4 ≤ 10 ms", "storage ≤ 195.3 KiB"} <= labels

    png = pareto_png_figure(CONFIG, RECORDS, BASELINE_METRICS)
    latency_ax, storage_ax = png.axes
    assert [tuple(line.get_xdata()) for line in latency_ax.lines if line.get_linestyle() == "--"] == [
        (10.0, 10.0)
    ]
    assert "storage ≤ 195.3 KiB" in [t.get_text() for t in storage_ax.texts]


def test_the_baseline_says_why_it_is_infeasible_and_only_when_it_is() -> None:
    expected = f"{BASELINE} (infeasible: latency_pixel4 12.1 ms > 10 ms)"
    figure = pareto_figure(CONFIG, RECORDS, BASELINE_METRICS)
    assert trace(figure, BASELINE).name == expected
    assert "infeasible: latency_pixel4 12.1 ms > 10 ms" in hover_text(trace(figure, BASELINE), 0)
    png = pareto_png_figure(CONFIG, RECORDS, BASELINE_METRICS)
    assert expected in [t.get_text() for t in png.legends[0].get_texts()]

    feasible = {**BASELINE_METRICS, "latency_pixel4": 9.5}
    assert trace(pareto_figure(CONFIG, RECORDS, feasible), BASELINE).name == BASELINE


def test_png_and_html_say_the_same_legend_and_axis_titles() -> None:
    view = pareto_view(CONFIG, RECORDS, BASELINE_METRICS)
    labels = [s.label for s in view.series]
    assert labels[:3] == [FRONT, FEASIBLE, INFEASIBLE] and labels[3].startswith(BASELINE)

    html, png = (
        pareto_figure(CONFIG, RECORDS, BASELINE_METRICS),
        pareto_png_figure(CONFIG, RECORDS, BASELINE_METRICS),
    )
    assert legend(html) == labels
    assert [t.get_text() for t in png.legends[0].get_texts()] == labels
    png_titles = [(ax.get_xlabel(), ax.get_ylabel()) for ax in png.axes]
    html_titles = [
        (html.layout[f"xaxis{n}"].title.text, html.layout[f"yaxis{n}"].title.text) for n in ("", "2")
    ]
    assert (
        png_titles
        == html_titles
        == [
            ("latency on pixel4 (ms)", "accuracy (%)"),
            ("storage (KiB)", "accuracy (%)"),
        ]
    )
    assert trace(html, FRONT, col=2).y == pytest.approx((93.5, 94.0))  # % on both


def test_a_large_model_is_plotted_in_mib() -> None:
    scale = 2**20 / 1000  # the same model, 10.4x larger: baseline 18.1 MiB
    big = [
        record(
            r.number,
            r.metrics["accuracy"] or 0,
            r.metrics["latency_pixel4"] or 0,
            (r.metrics["storage"] or 0) * scale,
        )
        for r in RECORDS
    ]
    figure = pareto_figure(CONFIG, big, {**BASELINE_METRICS, "storage": 190_000 * scale})
    assert figure.layout.xaxis2.title.text == "storage (MiB)"
    assert "storage %{customdata[4]} MiB" in figure.data[0].hovertemplate


def test_files_are_written(tmp_path: Path) -> None:
    assert pareto_png(CONFIG, RECORDS, BASELINE_METRICS, tmp_path / "pareto.png").stat().st_size > 0
    page = pareto_html(CONFIG, RECORDS, BASELINE_METRICS, tmp_path / "pareto.html").read_text()
    assert "latency on pixel4 (ms)" in page and "hovertemplate" in page


def test_device_front_plots_accuracy_in_percent() -> None:
    metrics: list[Mapping[str, float]] = [
        {"accuracy": 0.9, "latency_pixel4": 2.0},
        {"accuracy": 0.8, "latency_pixel4": 1.0},
        {"accuracy": 0.7, "latency_pixel4": 3.0},
    ]
    records = [
        SubnetRecord(n, SubnetConfig(), metrics=m, utility=None, violations=(0.0 if n < 2 else 1.0,))
        for n, m in enumerate(metrics)
    ]
    figure = device_front_figure(records, records[:1], {"accuracy": 0.95, "latency_pixel4": 4.0}, "pixel4")
    (ax,) = figure.axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("latency on pixel4 (ms)", "accuracy (%)")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [INFEASIBLE, FEASIBLE, FRONT, BASELINE]
    assert tuple(ax.lines[0].get_ydata()) == pytest.approx((90.0,))
