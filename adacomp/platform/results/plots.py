"""Pareto plots of a search: a PNG (matplotlib) and an interactive HTML page (plotly).

The first objective (usually accuracy) is plotted against each of the others: every trial in
grey, infeasible ones as crosses, the front joined in colour, the uncompressed baseline as a
star. The HTML page embeds plotly.js, so it opens offline and inside the MLflow UI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from adacomp.platform.results.front import column_name, objective_vector, pareto_front
from adacomp.platform.results.ledger import TrialRecord
from adacomp.platform.search_config import SearchConfig


def _pairs(config: SearchConfig) -> list[tuple[int, int]]:
    """The first objective against each other one (itself, when it is the only one)."""
    return [(0, j) for j in range(1, len(config.objectives))] or [(0, 0)]


def pareto_png(
    config: SearchConfig, records: Sequence[TrialRecord], baseline: Mapping[str, float | None], path: Path
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = _pairs(config)
    front = pareto_front(config, records)
    front_numbers = {r.number for r in front}
    figure, axes = plt.subplots(1, len(pairs), figsize=(5.5 * len(pairs), 4.5), squeeze=False)
    for ax, (i, j) in zip(axes[0], pairs, strict=True):
        x_obj, y_obj = config.objectives[j], config.objectives[i]
        for feasible, marker, colour, label in (
            (True, "o", "0.6", "trials"),
            (False, "x", "tab:red", "infeasible"),
        ):
            points = [
                (v[j], v[i])
                for r in records
                if r.feasible == feasible and r.number not in front_numbers
                if (v := objective_vector(config, r.metrics)) is not None
            ]
            if points:
                ax.scatter(*zip(*points, strict=True), marker=marker, c=colour, s=22, label=label)
        line = sorted((v[j], v[i]) for r in front if (v := objective_vector(config, r.metrics)) is not None)
        if line:
            ax.plot(*zip(*line, strict=True), "-o", c="tab:blue", ms=6, label="Pareto front")
        base = objective_vector(config, baseline)
        if base is not None:
            ax.scatter(
                [base[j]], [base[i]], marker="*", s=180, c="tab:orange", label="uncompressed", zorder=5
            )
        ax.set_xlabel(column_name(x_obj))
        ax.set_ylabel(column_name(y_obj))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.suptitle(f"{config.name}: {len(front)} on the front of {len(records)} trials")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def pareto_html(
    config: SearchConfig, records: Sequence[TrialRecord], baseline: Mapping[str, float | None], path: Path
) -> Path:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    pairs = _pairs(config)
    front_numbers = {r.number for r in pareto_front(config, records)}
    figure = make_subplots(rows=1, cols=len(pairs))
    groups = {
        "Pareto front": [r for r in records if r.number in front_numbers],
        "feasible": [r for r in records if r.feasible and r.number not in front_numbers],
        "infeasible": [r for r in records if not r.feasible and not r.failed],
    }
    styles = {
        "Pareto front": {"color": "#1f77b4", "size": 10},
        "feasible": {"color": "#999999", "size": 7},
        "infeasible": {"color": "#d62728", "size": 7, "symbol": "x"},
    }
    for col, (i, j) in enumerate(pairs, start=1):
        for name, group in groups.items():
            rows = [(r, v) for r in group if (v := objective_vector(config, r.metrics)) is not None]
            if name == "Pareto front":
                rows.sort(key=lambda rv: rv[1][j])
            figure.add_trace(
                go.Scatter(
                    x=[v[j] for _, v in rows],
                    y=[v[i] for _, v in rows],
                    mode="lines+markers" if name == "Pareto front" else "markers",
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    marker=styles[name],
                    text=[f"trial {r.number}<br>utility {r.utility}<br>{r.plan}" for r, _ in rows],
                    hoverinfo="text+x+y",
                ),
                row=1,
                col=col,
            )
        base = objective_vector(config, baseline)
        if base is not None:
            figure.add_trace(
                go.Scatter(
                    x=[base[j]],
                    y=[base[i]],
                    mode="markers",
                    name="uncompressed",
                    showlegend=col == 1,
                    marker={"symbol": "star", "size": 16, "color": "#ff7f0e"},
                ),
                row=1,
                col=col,
            )
        figure.update_xaxes(title_text=column_name(config.objectives[j]), row=1, col=col)
        figure.update_yaxes(title_text=column_name(config.objectives[i]), row=1, col=col)
    figure.update_layout(title=f"{config.name}: Pareto front", template="plotly_white")
    figure.write_html(path, include_plotlyjs=True, full_html=True)
    return path


def device_front_png(
    records: Sequence[Any],
    front: Sequence[Any],
    baseline: Mapping[str, float | None],
    device: str,
    out_dir: Path,
) -> Path:
    """Accuracy against latency on one device: every feasible configuration, the front, the baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = f"latency_{device}"
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=110)
    feasible = [r for r in records if r.feasible and key in r.metrics]
    infeasible = [r for r in records if not r.failed and not r.feasible and key in r.metrics]
    ax.scatter(
        [r.metrics[key] for r in infeasible],
        [r.metrics["accuracy"] for r in infeasible],
        s=14,
        c="#cccccc",
        label="infeasible",
    )
    ax.scatter(
        [r.metrics[key] for r in feasible],
        [r.metrics["accuracy"] for r in feasible],
        s=18,
        c="#7f9fbf",
        label="feasible",
    )
    ax.plot(
        [r.metrics[key] for r in front],
        [r.metrics["accuracy"] for r in front],
        "o-",
        c="#d62728",
        label="front",
    )
    if baseline.get(key) is not None and baseline.get("accuracy") is not None:
        ax.scatter(
            [float(baseline[key] or 0)],
            [float(baseline["accuracy"] or 0)],
            marker="*",
            s=140,
            c="black",
            label="uncompressed",
        )
    ax.set_xlabel(f"latency on {device} (ms)")
    ax.set_ylabel("accuracy (test)")
    ax.set_title(f"supernet configurations on {device}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = out_dir / f"pareto_{device}.png"
    fig.savefig(path)
    plt.close(fig)
    return path
