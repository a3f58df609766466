"""Two searches of one task compared at equal wall-clock compute: hypervolume over time.

A search's compute runs from the first thing it trains for its trials: in supernet mode the
supernet's ensemble training (its seconds, logged by the search as `supernet_train_seconds`),
then the trials, then the polish of the front; in fine-tune mode the trials and the polish. The
uncompressed model's training and measurement are the same for both and left out. Each
finished trial (and each polished plan, replacing its trial's numbers) is a point in time; the
hypervolume of everything finished by then is the curve. Curves are normalised by one
reference (the first search's baseline), so both share one scale.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from report import save_figure

from adacomp.platform.results.front import normalised_hypervolume
from adacomp.platform.results.ledger import Ledger, TrialRecord
from adacomp.platform.results.snapshot import POLISHED_FILE, SearchResult
from adacomp.platform.search_config import SearchConfig

Curve = list[tuple[float, float]]  # (seconds of compute, hypervolume)


def supernet_seconds(result: SearchResult) -> float:
    """The supernet's training time as the search logged it (0 in fine-tune mode)."""
    if result.config.evaluation != "supernet":
        return 0.0
    from mlflow import MlflowClient

    metrics = MlflowClient(result.tracking_uri).get_run(result.run_id).data.metrics
    return float(metrics.get("supernet_train_seconds", 0.0))


def events(result: SearchResult) -> list[tuple[float, TrialRecord]]:
    """Every trial and polished plan with the compute second it finished at."""
    trials = Ledger[TrialRecord](result.out_dir / "trials.jsonl").load()
    polished = Ledger[TrialRecord](result.out_dir / POLISHED_FILE).load()
    if not trials:
        return []
    start = min(r.finished_at - r.seconds for r in trials)
    offset = supernet_seconds(result)
    timed = [(offset + r.finished_at - start, r) for r in trials]
    timed += [(offset + r.finished_at - start, replace(r, polished=True)) for r in polished]
    return sorted(timed, key=lambda item: item[0])


def hypervolume_curve(
    config: SearchConfig, result: SearchResult, reference: dict[str, float | None]
) -> Curve:
    """The hypervolume of what `result` had finished, after each event (config's objectives)."""
    current: dict[int, TrialRecord] = {}
    curve: Curve = []
    for seconds, record in events(result):
        current[record.number] = record  # a polished plan replaces its trial's numbers
        curve.append(
            (round(seconds, 1), round(normalised_hypervolume(config, list(current.values()), reference), 5))
        )
    return curve


def at(curve: Curve, seconds: float) -> float:
    """The curve's hypervolume at `seconds` of compute (0 before its first point)."""
    found = 0.0
    for t, hv in curve:
        if t > seconds:
            break
        found = hv
    return found


def plot(curves: dict[str, Curve], title: str, path: Path) -> None:
    """Hypervolume over compute time, one step line per search, written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for label, curve in curves.items():
        if curve:
            xs = [0.0, *(t / 60 for t, _ in curve)]
            ys = [0.0, *(hv for _, hv in curve)]
            axes.step(xs, ys, where="post", label=label)
    save_figure(
        figure,
        axes,
        ("compute (minutes, supernet training included)", "hypervolume (normalised)"),
        title,
        path,
    )


def compare(
    config: SearchConfig, results: dict[str, SearchResult], plot_path: Path | None = None
) -> dict[str, Any]:
    """Each search's curve, its total compute and the hypervolumes at the shorter one's end."""
    reference = next(iter(results.values())).baseline
    curves = {label: hypervolume_curve(config, result, reference) for label, result in results.items()}
    totals = {label: (curve[-1][0] if curve else 0.0) for label, curve in curves.items()}
    equal = min(totals.values())
    if plot_path is not None:
        plot(curves, f"{config.task}: hypervolume over compute", plot_path)
    return {
        "equal_compute_s": equal,
        "total_compute_s": totals,
        "hypervolume_at_equal_compute": {label: at(curve, equal) for label, curve in curves.items()},
        "hypervolume_final": {label: (curve[-1][1] if curve else 0.0) for label, curve in curves.items()},
        "curves": curves,
        "plot": str(plot_path) if plot_path is not None else None,
    }
