"""`adacomp supernet search`: the supernet's configurations, evaluated without retraining.

Each proposal (Optuna, multi-objective over the config's objectives, constrained like a
search) is extracted from the trained supernet, gets its own BatchNorm statistics, is exported
at its precision, scored on the test split through onnxruntime and measured on every target
through the farm. Evaluations take seconds, not minutes, so they run one at a time in this
process (no Tune scheduling to amortise); the farm still isolates host measurements.

Files in `<output.dir>/<name>/supernet/`: `configs.jsonl` (one line per evaluated configuration,
what a resume and `adacomp export` read), `models/<hash>.onnx`, `search.json`, `optuna.journal`,
and per target device `front_<device>.csv` and `pareto_<device>.png`. MLflow: a parent run
(`adacomp.kind=supernet-search`), a child per configuration, the per-device fronts.

`supernet.trials` is the number of distinct configurations: one the search has evaluated is
not evaluated, recorded or logged again, and takes no slot; the sampler is asked again (the
rule of every search, optuna_searcher.py), and a space with no new configuration left ends
the search short of its budget, saying so.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from adacomp.device_farm import Farm
from adacomp.errors import AdacompError, first_line
from adacomp.platform.evaluate.evaluators.supernet import bn_batches, evaluate_subnet
from adacomp.platform.evaluate.objectives import constraint_violations, utility
from adacomp.platform.evaluate.outcome import Outcome
from adacomp.platform.evaluate.pareto import hypervolume, non_dominated
from adacomp.platform.evaluate.trial import TrialContext
from adacomp.platform.results.job_dir import JobDir
from adacomp.platform.results.ledger import Ledger
from adacomp.platform.results.mlflow_ui import display_metrics
from adacomp.platform.results.tracking import SearchTracker
from adacomp.platform.search_config import Log, SearchConfig, as_search_config, silent
from adacomp.platform.supernet_training.training import WEIGHTS_FILE, load_trained_supernet, supernet_dir
from adacomp.platform.table import format_table, kib
from adacomp.runtime.manifest import file_sha256
from adacomp.search_spaces.supernet import SubnetConfig, Supernet

Metrics = Mapping[str, float | None]
PRECISION_TECHNIQUE = {"fp16": "fp16", "int8": "int8"}


@dataclass(frozen=True)
class SubnetRecord(Outcome[float]):
    """A supernet configuration's outcome (`adacomp supernet search`, a bundle's entries)."""

    number: int
    config: SubnetConfig
    finished_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "config": self.config.to_dict(),
            **self.outcome_dict(),
            "finished_at": self.finished_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SubnetRecord:
        return cls(
            number=int(data["number"]),
            config=SubnetConfig.from_dict(data["config"]),
            **cls.outcome_fields(data),
            finished_at=float(data["finished_at"]),
        )


# --- per-device fronts (pure) ----------------------------------------------------------------
def device_objectives(device: str, baseline: Metrics) -> list[tuple[str, str]]:
    """(metric, mode) the per-device front is over; energy only where the device measures it."""
    keys = [("accuracy", "max"), (f"latency_{device}", "min")]
    if baseline.get(f"energy_{device}") is not None:
        keys.append((f"energy_{device}", "min"))
    keys.append(("storage", "min"))
    return keys


def _vector(record: SubnetRecord, objectives: Sequence[tuple[str, str]]) -> tuple[float, ...] | None:
    values: list[float] = []
    for key, mode in objectives:
        value = record.metrics.get(key)
        if value is None or not math.isfinite(value):
            return None
        values.append(-float(value) if mode == "max" else float(value))
    return tuple(values)


def device_front(records: Sequence[SubnetRecord], device: str, baseline: Metrics) -> list[SubnetRecord]:
    """Feasible configurations no other beats on accuracy, latency, energy and storage on `device`."""
    objectives = device_objectives(device, baseline)
    seen: set[str] = set()
    kept: list[tuple[SubnetRecord, tuple[float, ...]]] = []
    for record in records:
        vector = _vector(record, objectives)
        if record.feasible and vector is not None and record.config.hash not in seen:
            seen.add(record.config.hash)
            kept.append((record, vector))
    front = [kept[i][0] for i in non_dominated([v for _, v in kept])]
    return sorted(front, key=lambda r: r.metrics[f"latency_{device}"])


def device_hypervolume(records: Sequence[SubnetRecord], device: str, baseline: Metrics) -> float:
    """Baseline-normalised, reference: zero accuracy and twice the baseline's costs (as front.py)."""
    objectives = device_objectives(device, baseline)
    scales = [abs(baseline.get(k) or 1.0) for k, _ in objectives]
    reference = [0.0 if mode == "max" else 2.0 for _, mode in objectives]
    points = []
    for record in device_front(records, device, baseline):
        vector = _vector(record, objectives)
        assert vector is not None
        points.append(tuple(v / s for v, s in zip(vector, scales, strict=True)))
    return hypervolume(points, reference)


@dataclass(frozen=True)
class SupernetSearchResult:
    config: SearchConfig
    directory: Path
    records: list[SubnetRecord]
    baseline: dict[str, float | None]
    run_id: str
    tracking_uri: str
    seconds: float

    def front(self, device: str) -> list[SubnetRecord]:
        return device_front(self.records, device, self.baseline)

    def table(self, device: str) -> str:
        """The device's front, the uncompressed baseline first (platform.table's layout)."""

        def row(name: str, m: Metrics, u: float | None, arch: str) -> list[object]:
            energy = m.get(f"energy_{device}")
            return [
                name,
                f"{m.get('accuracy', float('nan')):.4f}",
                f"{m.get(f'latency_{device}', float('nan')):.4f}",
                "-" if energy is None else f"{energy:.4f}",
                kib(m.get("storage") or 0),
                "-" if u is None else f"{u:.4f}",
                arch,
            ]

        rows = [row("baseline", self.baseline, utility(self.config, self.baseline, self.baseline), "-")]
        rows += [row(r.config.hash, r.metrics, r.utility, str(r.config)) for r in self.front(device)]
        headers = ["config", "accuracy", "latency ms", "energy mJ", "storage KiB", "utility", "architecture"]
        return format_table(headers, rows)


def load_records(directory: Path) -> list[SubnetRecord]:
    return Ledger(directory / "configs.jsonl", SubnetRecord.from_dict).load()


def _suggest(trial: Any, supernet: Supernet) -> SubnetConfig:
    space = supernet.space
    width = {g: trial.suggest_categorical(f"width/{g}", list(v)) for g, v in space.widths.items()}
    rank = {k: trial.suggest_categorical(f"rank/{k}", list(v)) for k, v in space.ranks.items()}
    skip = [b for b in supernet.layout.blocks if trial.suggest_categorical(f"skip/{b}", [False, True])]
    precision = trial.suggest_categorical("precision", list(space.precisions))
    alternative = {
        layer: chosen
        for layer, techniques in space.alternatives.items()
        if (chosen := trial.suggest_categorical(f"alternative/{layer}", ["none", *techniques])) != "none"
    }
    return space.validate(SubnetConfig.of(width, rank, skip, precision, alternative))


def _params(config: SubnetConfig, supernet: Supernet) -> dict[str, Any]:
    params: dict[str, Any] = {f"width/{k}": v for k, v in config.width}
    params.update({f"rank/{k}": v for k, v in config.rank})
    params.update({f"skip/{b}": b in config.skip for b in supernet.layout.blocks})
    params["precision"] = config.precision
    chosen = dict(config.alternative)
    params.update({f"alternative/{k}": chosen.get(k, "none") for k in supernet.space.alternatives})
    return params


class _Tracking:
    """MLflow for the supernet search: the parent run, a child per configuration, the fronts."""

    def __init__(self, tracker: SearchTracker, parent_id: str) -> None:
        self.tracker, self.parent_id = tracker, parent_id

    def children(self) -> dict[int, str]:
        return self.tracker.child_runs(self.parent_id)

    def log(self, record: SubnetRecord, model_path: Path | None) -> None:
        tags = {
            "adacomp.config_hash": record.config.hash,
            "adacomp.feasible": str(record.feasible).lower(),
            "adacomp.failed": str(record.failed).lower(),
        }
        if record.reason:
            tags["adacomp.failure_reason"] = record.reason[:5000]
        params: dict[str, object] = {"config_hash": record.config.hash, "precision": record.config.precision}
        params.update({f"width.{k}": v for k, v in record.config.width})
        params.update({f"rank.{k}": v for k, v in record.config.rank})
        params["skip"] = ",".join(record.config.skip) or "-"
        params.update({f"alternative.{k}": v for k, v in record.config.alternative})
        self.tracker.log_child(
            self.parent_id,
            record.number,
            f"config-{record.number:04d}",
            tags=tags,
            params=params,
            metrics={
                **record.metrics,
                **display_metrics(record.metrics, record.utility),
                "utility": record.utility,
                "feasible": float(record.feasible),
            },
            texts={"config.json": json.dumps(record.config.to_dict(), indent=2) + "\n"},
            files=[model_path] if model_path is not None else [],
            failed=record.failed,
            finished_at=record.finished_at,
            seconds=record.seconds,
        )


@dataclass
class _SearchState:
    """An open supernet search: its baseline, MLflow run and the configurations evaluated so far."""

    directory: Path
    baseline: dict[str, float | None]
    tracking: _Tracking
    ledger: Ledger[SubnetRecord]
    records: list[SubnetRecord]


def supernet_search_job(config: SearchConfig) -> JobDir:
    """Where a supernet search keeps its state (parent run, baseline, the weights it searched)."""
    return JobDir(supernet_dir(config), "search.json", f"a supernet search for {config.name!r}")


def supernet_search(
    config: SearchConfig | str | Path, *, resume: bool = False, log: Log | None = None
) -> SupernetSearchResult:
    """Evaluates `config.supernet.trials` configurations of the trained supernet (or resumes)."""
    from adacomp.platform.evaluate.farm_targets import farm_for_targets

    started = time.perf_counter()
    say = log or silent
    config = as_search_config(config)
    directory = supernet_dir(config)
    job = supernet_search_job(config)
    state = job.open(resume=resume)
    farm_config = farm_for_targets(config)
    task, model, supernet = load_trained_supernet(config)
    weights_sha = file_sha256(directory / WEIGHTS_FILE)
    if state and state.get("weights_sha256") != weights_sha:
        raise AdacompError(
            f"supernet: {directory / WEIGHTS_FILE} changed since this search began; "
            "remove supernet/search.json and supernet/configs.jsonl to search the new one"
        )
    farm = Farm(farm_config)
    try:
        ctx = TrialContext(config, task, model, farm, config.measure, task.calibration_batches())
        search = _open_search(config, job, state, ctx, weights_sha, say)
        study = _open_study(config, directory, supernet, search.records)
        batches = bn_batches(task, config)
        while len(search.records) < config.supernet.trials:
            record = _evaluate_next(config, ctx, supernet, study, search, batches)
            if record is None:
                say(
                    "supernet: the sampler proposed no configuration this search has not evaluated; "
                    f"it ends with {len(search.records)} of {config.supernet.trials} "
                    "(the space may hold no more)"
                )
                break
            say(_line(config, record, len(search.records)))
        result = SupernetSearchResult(
            config,
            directory,
            search.records,
            search.baseline,
            search.tracking.parent_id,
            search.tracking.tracker.tracking_uri,
            time.perf_counter() - started,
        )
        _finish(result, search.tracking)
        return result
    finally:
        farm.close()


def _open_search(
    config: SearchConfig,
    job: JobDir,
    state: dict[str, Any],
    ctx: TrialContext,
    weights_sha: str,
    say: Log,
) -> _SearchState:
    """The baseline (measured once, then kept), the parent run (new, or reopened on resume) and
    the configurations already evaluated, each logged to MLflow exactly once."""
    from adacomp.platform.search.preflight import job_baseline

    baseline = job_baseline(ctx, state, say)
    tracker = SearchTracker.for_config(config, state.get("tracking_uri"))
    if state:
        parent_id = state["parent_run_id"]
        tracker.reopen(parent_id)
    else:
        parent_id = tracker.start_search(
            config, job.path, baseline, kind="supernet-search", name=f"{config.name}-supernet-search"
        )
        job.save(
            {
                "parent_run_id": parent_id,
                "tracking_uri": tracker.tracking_uri,
                "baseline": baseline,
                "weights_sha256": weights_sha,
            }
        )
    tracking = _Tracking(tracker, parent_id)
    ledger = Ledger(job.path / "configs.jsonl", SubnetRecord.from_dict)
    records = ledger.load()
    logged = tracking.children()
    for record in records:  # a kill between the ledger line and MLflow: log it now, once
        if record.number not in logged:
            tracking.log(record, job.path / "models" / f"{record.config.hash}.onnx")
    (job.path / "models").mkdir(parents=True, exist_ok=True)
    return _SearchState(job.path, baseline, tracking, ledger, records)


def _open_study(
    config: SearchConfig, directory: Path, supernet: Supernet, records: Sequence[SubnetRecord]
) -> Any:
    """The Optuna study (its journal beside the records), with the strategy's sampler; a new
    study evaluates the ends of the space first: largest (in both extreme precisions), smallest."""
    import optuna

    from adacomp.platform.strategies._base import SearcherSetup
    from adacomp.platform.strategies.optuna_searcher import name_objectives, open_journal
    from adacomp.platform.strategies.registry import get_strategy

    study_name = f"adacomp-{config.name}-supernet"
    storage = open_journal(directory / "optuna.journal", study_name)
    setup = SearcherSetup(
        define_by_run=lambda trial: {},
        metrics=tuple(o.key for o in config.objectives),
        modes=tuple(o.mode for o in config.objectives),
        trials=config.supernet.trials,
        seed=config.seed,
        storage=storage,
        study_name=study_name,
    )
    # A strategy without an Optuna sampler (the RL agent) searches the supernet with NSGA-II.
    sampler = get_strategy(config.strategy).sampler(setup) or optuna.samplers.NSGAIISampler(seed=config.seed)
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        sampler=sampler,
        directions=["maximize" if o.mode == "max" else "minimize" for o in config.objectives],
        load_if_exists=True,
    )
    name_objectives(study, list(setup.metrics))
    if not records and not study.trials:
        space = supernet.space
        ends = [space.largest(space.precisions[0]), space.largest(space.precisions[-1]), space.smallest()]
        for end in dict.fromkeys(ends):
            study.enqueue_trial(_params(end, supernet))
    return study


def _evaluate_next(
    config: SearchConfig,
    ctx: TrialContext,
    supernet: Supernet,
    study: Any,
    search: _SearchState,
    batches: list[torch.Tensor],
) -> SubnetRecord | None:
    """One ask of a new configuration, evaluate, record, tell; None when the sampler has no new
    one. A configuration evaluated before is told as a duplicate and asked again (`ask_new`);
    a failed one may be tried again. The record goes to the ledger first, so a kill after that
    is reconciled on resume."""
    from adacomp.platform.strategies.optuna_searcher import ask_new, tell_result

    known = {r.config.hash: r.number for r in search.records if not r.failed}
    found = ask_new(study, lambda trial: _suggest(trial, supernet), lambda c: known.get(c.hash))
    if found is None:
        return None
    trial, subnet = found
    t0 = time.perf_counter()
    model_path = search.directory / "models" / f"{subnet.hash}.onnx"
    metrics: dict[str, float | None] = {}
    reason = None
    try:
        metrics, onnx_model = evaluate_subnet(ctx, supernet, subnet, batches)
        model_path.write_bytes(onnx_model)
    except AdacompError as error:
        reason = first_line(error)
    failed = reason is not None
    record = SubnetRecord(
        number=trial.number,
        config=subnet,
        metrics={k: v for k, v in metrics.items() if v is not None},
        utility=None if failed else utility(config, metrics, search.baseline),
        violations=() if failed else tuple(constraint_violations(config, metrics)),
        failed=failed,
        reason=reason,
        seconds=time.perf_counter() - t0,
    )
    search.ledger.append(record)
    search.records.append(record)
    search.tracking.log(record, model_path)
    tell_result(
        study, trial, [metrics.get(o.key) for o in config.objectives], record.violations, failure=reason
    )
    return record


def _line(config: SearchConfig, record: SubnetRecord, done: int) -> str:
    head = f"config {done}/{config.supernet.trials} {record.config.hash}"
    if record.failed:
        return f"{head}: failed ({record.reason})"
    m = record.metrics
    costs = ", ".join(f"{t} {m[f'latency_{t}']:.3f} ms" for t in config.targets if f"latency_{t}" in m)
    feasible = "feasible" if record.feasible else "infeasible"
    return f"{head}: accuracy {m['accuracy']:.4f}, {costs}, {kib(m['storage'])} KiB, {feasible}"


def _finish(result: SupernetSearchResult, tracking: _Tracking) -> None:
    from adacomp.platform.results.plots import device_front_png

    files: list[Path] = []
    summary: dict[str, float] = {"configurations": float(len(result.records))}
    on_front: dict[str, set[int]] = {}
    for device in result.config.targets:
        front = result.front(device)
        on_front[device] = {r.number for r in front}
        csv = result.directory / f"front_{device}.csv"
        keys = [
            "accuracy",
            "accuracy_drop",
            f"latency_{device}",
            f"energy_{device}",
            f"memory_{device}",
            "storage",
        ]
        lines = ["config_hash,number," + ",".join(keys) + ",utility,architecture"]
        for r in front:
            values = ",".join("" if r.metrics.get(k) is None else f"{r.metrics[k]:.6g}" for k in keys)
            lines.append(f'{r.config.hash},{r.number},{values},{r.utility:.6g},"{r.config}"')
        csv.write_text("\n".join(lines) + "\n")
        files.append(csv)
        files.append(device_front_png(result.records, front, result.baseline, device, result.directory))
        summary[f"front_size_{device}"] = float(len(front))
        summary[f"hypervolume_{device}"] = device_hypervolume(result.records, device, result.baseline)
    tracker = tracking.tracker
    tracker.log_files(result.run_id, files, artifact_path="pareto")
    children = tracking.children()
    for number, run_id in children.items():
        tracker.set_tags(
            run_id, {f"adacomp.pareto.{d}": str(number in numbers).lower() for d, numbers in on_front.items()}
        )
    tracker.log_metrics(result.run_id, dict(summary))
    tracker.describe_run(result.run_id, _description(result, summary, tracker.experiment_id, children))
    tracker.finish(result.run_id)


def _description(
    result: SupernetSearchResult,
    summary: Mapping[str, float],
    experiment_id: str,
    children: Mapping[int, str],
) -> str:
    """The supernet search run's description: per target device, its front as a Markdown table
    (units, rounded, each configuration linked to its run)."""
    from adacomp.platform.results.mlflow_ui import cell, header, markdown_table, run_path

    failed = sum(r.failed for r in result.records)
    parts = [
        f"**{result.config.name}** (supernet): {len(result.records)} configurations ({failed} failed); "
        "the front on each target device below, best utility first. `adacomp export` ships them."
    ]
    for device in result.config.targets:
        keys = ["accuracy", f"latency_{device}", "storage"]
        rows = []
        for r in sorted(result.front(device), key=lambda r: -(r.utility or 0.0)):
            number = (
                f"[{r.number}]({run_path(experiment_id, children[r.number])})"
                if r.number in children
                else (str(r.number))
            )
            values = [cell(k, r.metrics.get(k)) for k in keys]
            rows.append([number, *values, cell("utility", r.utility), str(r.config)])
        table = markdown_table(["configuration", *map(header, keys), "utility", "architecture"], rows)
        hv = summary.get(f"hypervolume_{device}", float("nan"))
        parts.append(f"**Front on {device}**: {len(rows)} configurations, hypervolume {hv:.4f}\n\n{table}")
    return "\n\n".join(parts)
