"""`adacomp nightly CONFIG`: tonight's search, warm-started from last night's, compared with it.

Each night is its own search (`<output.dir>/<name>/nightly/<name>-<date>/`, one MLflow parent
run) logging to the config's MLflow store. What carries over:
- the Optuna study: every night asks and tells the same study (one journal beside the nights),
  so the sampler starts from everything earlier nights learned;
- last night's Pareto plans, evaluated first: devices, data and libraries change, so a plan
  is re-measured rather than trusted;
- for the `rl` strategy, last night's agent (`--init-policy` implied).

A night killed half-way is resumed by running the command again the same night. Then tonight
is compared with the latest earlier night: the hypervolume over the config's objectives and, per
target device, the 2-D hypervolume of accuracy against latency and the best feasible latency,
all normalised by the *earlier* night's baseline so that a device that got slower shows. A drop
beyond `--threshold` (relative) is a regression: the report (Markdown next to the nights and an
MLflow run per night, updated in place when the night is run again) says which, and the
command exits with EXIT_REGRESSION.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from adacomp.errors import AdacompError
from adacomp.platform.results.front import normalised_hypervolume, pareto_front
from adacomp.platform.results.ledger import Ledger, TrialRecord
from adacomp.platform.results.tracking import KIND_TAG, SEARCH_TAG, SearchTracker, default_tracking_uri
from adacomp.platform.search_config import (
    SUPERNET_TECHNIQUES,
    Log,
    Objective,
    SearchConfig,
    as_search_config,
    silent,
)
from adacomp.platform.strategies.registry import get_strategy
from adacomp.search_spaces import CompressionPlan

EXIT_REGRESSION = 3
NIGHTLY_DIR = "nightly"
DATE_FORMAT = "%Y-%m-%d"
NIGHT_TAG = "adacomp.night"  # a report run's night: one report run per night and config


@dataclass(frozen=True)
class NightSummary:
    """What a night leaves for the next one to compare with (one line of history.jsonl)."""

    date: str
    number: int  # nights are numbered in order; `Ledger` keys on it
    search_dir: str
    run_id: str
    trials: int
    feasible: int
    baseline: Mapping[str, float | None]
    records: tuple[TrialRecord, ...] = field(repr=False)
    front: tuple[str, ...]  # plan JSON of tonight's Pareto front
    finished_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["records"] = [r.to_dict() for r in self.records]
        data["baseline"] = dict(self.baseline)
        data["front"] = list(self.front)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NightSummary:
        return cls(
            **{
                **data,
                "records": tuple(TrialRecord.from_dict(r) for r in data["records"]),
                "front": tuple(data["front"]),
            }
        )

    def front_plans(self) -> list[CompressionPlan]:
        return [CompressionPlan.from_json(text) for text in self.front]


@dataclass(frozen=True)
class Change:
    what: str  # e.g. "hypervolume", "pixel4: hypervolume (accuracy x latency)"
    last: float | None
    tonight: float | None
    regression: bool
    higher_is_better: bool = True

    @property
    def relative(self) -> float | None:
        if self.last is None or self.tonight is None or self.last == 0:
            return None
        return (self.tonight - self.last) / abs(self.last)


def _device_config(config: SearchConfig, device: str) -> SearchConfig:
    objectives = (Objective(metric="accuracy"), Objective(metric="latency", target=device))
    return config.model_copy(update={"objectives": objectives})


def _best_latency(records: Sequence[TrialRecord], device: str) -> float | None:
    values = [
        float(v)
        for r in records
        if r.feasible and r.duplicate_of is None and (v := r.metrics.get(f"latency_{device}")) is not None
    ]
    return min(values) if values else None


def compare(
    config: SearchConfig, last: NightSummary, tonight: NightSummary, threshold: float
) -> list[Change]:
    """Tonight against last night, both normalised by last night's baseline (pure)."""
    reference = last.baseline

    def hv(cfg: SearchConfig, night: NightSummary) -> float:
        return normalised_hypervolume(cfg, night.records, reference)

    def worse(before: float | None, after: float | None, higher_is_better: bool) -> bool:
        if before is None:
            return False
        if after is None:
            return True
        if higher_is_better:
            return after < before * (1 - threshold) - 1e-12
        return after > before * (1 + threshold) + 1e-12

    changes = []
    before, after = hv(config, last), hv(config, tonight)
    changes.append(Change("hypervolume", before, after, worse(before, after, True)))
    for device in config.targets:
        if last.baseline.get(f"latency_{device}") is None:
            continue  # a device that measures no latency has no device front
        cfg = _device_config(config, device)
        before, after = hv(cfg, last), hv(cfg, tonight)
        changes.append(
            Change(f"{device}: hypervolume (accuracy x latency)", before, after, worse(before, after, True))
        )
        before_ms = _best_latency(last.records, device)
        after_ms = _best_latency(tonight.records, device)
        changes.append(
            Change(
                f"{device}: best feasible latency (ms)",
                before_ms,
                after_ms,
                worse(before_ms, after_ms, False),
                higher_is_better=False,
            )
        )
    return changes


def report_markdown(
    config: SearchConfig,
    tonight: NightSummary,
    last: NightSummary | None,
    changes: Sequence[Change],
    threshold: float,
) -> str:
    lines = [f"# adacomp nightly: {config.name}, {tonight.date}", ""]
    lines.append(
        f"Tonight: {tonight.trials} trials ({tonight.feasible} feasible), {len(tonight.front)} on the "
        f"Pareto front; search `{tonight.search_dir}`, MLflow run `{tonight.run_id}`."
    )
    if last is None:
        lines += ["", "First night: nothing to compare with."]
        return "\n".join(lines) + "\n"
    regressions = [c for c in changes if c.regression]
    verdict = f"**{len(regressions)} regression(s)**" if regressions else "no regression"
    lines += [
        "",
        f"Compared with {last.date} (both normalised by {last.date}'s baseline; threshold "
        f"{100 * threshold:.0f} %): {verdict}.",
        "",
        "| measure | " + last.date + " | " + tonight.date + " | change | |",
        "|---|---|---|---|---|",
    ]
    for c in changes:
        rel = c.relative
        change = "-" if rel is None else f"{100 * rel:+.1f} %"
        mark = "REGRESSION" if c.regression else ""
        lines.append(f"| {c.what} | {_fmt(c.last)} | {_fmt(c.tonight)} | {change} | {mark} |")
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4g}"


@dataclass(frozen=True)
class NightlyResult:
    tonight: NightSummary
    last: NightSummary | None
    changes: list[Change]
    report_path: Path
    report_run_id: str

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.regression]


def nightly_dir(config: SearchConfig) -> Path:
    return (config.output.dir / config.name / NIGHTLY_DIR).resolve()


def nightly(
    config: SearchConfig | str | Path,
    *,
    date: str | None = None,
    threshold: float = 0.05,
    address: str | None = None,
    log: Log | None = None,
) -> NightlyResult:
    """Runs (or resumes) tonight's search and compares it with the latest earlier night."""
    say = log or silent
    config = as_search_config(config)
    date = date or time.strftime(DATE_FORMAT, time.gmtime())
    try:
        time.strptime(date, DATE_FORMAT)
    except ValueError:
        raise AdacompError(f"date: expected YYYY-MM-DD, got {date!r}") from None
    if not 0 <= threshold < 1:
        raise AdacompError(f"threshold: expected a fraction in [0, 1), got {threshold}")
    base = nightly_dir(config)
    history = _history(base)
    nights = history.load()
    earlier = [n for n in nights if n.date < date]
    last = max(earlier, key=lambda n: n.date) if earlier else None
    tonight = next((n for n in nights if n.date == date), None)
    tracking_uri = config.output.tracking_uri or default_tracking_uri(config.output.dir)
    if tonight is None:
        number = max((n.number for n in nights), default=-1) + 1
        tonight = _run_night(config, date, number, last, tracking_uri, address, say)
        history.append(tonight)
    else:
        say(f"night {date} already finished: comparing again")
    changes = compare(config, last, tonight, threshold) if last else []
    report_path = base / f"report-{date}.md"
    report_path.write_text(report_markdown(config, tonight, last, changes, threshold))
    run_id = _log_report(config, tracking_uri, tonight, last, changes, report_path)
    return NightlyResult(tonight, last, changes, report_path, run_id)


def _warm_plans(config: SearchConfig, plans: list[CompressionPlan]) -> list[CompressionPlan]:
    """Last night's front as tonight's first plans; a supernet-mode night keeps only the plans of
    techniques a supernet holds (a night before the switch may have found others)."""
    if config.evaluation != "supernet":
        return plans
    return [
        p for p in plans if all(s.technique in SUPERNET_TECHNIQUES for _, steps in p.layers for s in steps)
    ]


def _run_night(
    config: SearchConfig,
    date: str,
    number: int,
    last: NightSummary | None,
    tracking_uri: str,
    address: str | None,
    say: Log,
) -> NightSummary:
    """Tonight's search, in its own directory under the nightly one, warm-started from last night:
    its Pareto plans go first, and the strategy takes what it keeps from a search (the RL agent)."""
    from adacomp.platform.search.job import search

    base = nightly_dir(config)
    tonight_config = config.model_copy(
        update={
            "name": f"{config.name}-{date}",
            "output": config.output.model_copy(update={"dir": base, "tracking_uri": tracking_uri}),
        }
    )
    if last is not None:
        tonight_config = get_strategy(config.strategy).warm_start(tonight_config, Path(last.search_dir))
    warm = _warm_plans(config, last.front_plans()) if last else []
    say(
        f"night {date}: {config.trials} trials"
        + (f", starting with {len(warm)} Pareto plans of {last.date}" if last else " (first night)")
    )
    result = search(
        tonight_config,
        resume=True,  # the same night again continues it
        address=address,
        progress=False,
        initial_plans=warm,
        study=(base / "optuna.journal", f"adacomp-{config.name}-nightly"),
        log=say,
    )
    return NightSummary(
        date=date,
        number=number,
        search_dir=str(result.out_dir),
        run_id=str(result.run_id),
        trials=len(result.records),
        feasible=sum(r.feasible for r in result.records),
        baseline=result.baseline,
        records=tuple(result.records),
        front=tuple(r.plan.to_json(indent=None) for r in pareto_front(config, result.records)),
    )


def _log_report(
    config: SearchConfig,
    tracking_uri: str,
    tonight: NightSummary,
    last: NightSummary | None,
    changes: Sequence[Change],
    report_path: Path,
) -> str:
    """One MLflow run per night's report: the comparison as metrics, the Markdown as an artifact.

    Running a finished night again (to compare again, or after a kill while reporting) updates
    that night's report run in place, found by its tags, rather than adding a second run with
    the same date: its tags, the latest value of each metric and the Markdown become tonight's
    report. Duplicates an earlier version left are deleted (MLflow keeps them restorable)."""
    tracker = SearchTracker.for_config(config, tracking_uri)
    regressions = sum(c.regression for c in changes)
    identity = {KIND_TAG: "nightly-report", SEARCH_TAG: config.name, NIGHT_TAG: tonight.date}
    tags = {
        **identity,
        "adacomp.night_run": tonight.run_id,
        "adacomp.previous_night": last.date if last else "",
        "adacomp.regressions": str(regressions),
    }
    found = tracker.runs_tagged(identity)
    if found:
        run_id, *duplicates = found
        for duplicate in duplicates:
            tracker.client.delete_run(duplicate)
        tracker.reopen(run_id)
        tracker.set_tags(run_id, tags)
    else:
        run_id = tracker.start_run(f"nightly-{config.name}-{tonight.date}", tags)
    points: list[tuple[str, float, int]] = []
    for i, c in enumerate(changes):
        key = "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in c.what)[:200]
        for label, value in (("tonight", c.tonight), ("last", c.last)):
            if value is not None:
                points.append((f"{key}.{label}", float(value), i))
        points.append((f"{key}.regression", float(c.regression), i))
    points.append(("regressions", float(regressions), 0))
    tracker.log_series(run_id, points)
    tracker.log_files(run_id, [report_path])
    tracker.finish(run_id, status="FAILED" if regressions else "FINISHED")
    return run_id


def _history(base: Path) -> Ledger[NightSummary]:
    return Ledger(base / "history.jsonl", parse=NightSummary.from_dict)
