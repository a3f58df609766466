"""`adacomp export`: the deployable bundle of a supernet search, logged and registered in MLflow.

A bundle is `manifest.json` (schema v2, adacomp.runtime.manifest) and one ONNX model per chosen
configuration, each already at its precision. One model per configuration rather than shared
weights plus slicing code: the device then needs only onnxruntime, every model is exactly what
was measured, and a switch is one session load (measured in benchmarks/supernet_bench.py).
Each model also ships in ONNX Runtime's format (`models/<id>.ort`, for ORT's minimal and mobile
builds), with the operator config such a build is compiled with (ort_format.py).

Which configurations: the union of the per-device Pareto fronts; when that is more than
`supernet.bundle_size`, each device's front is thinned to spread along latency (its fastest and
its most accurate first, then the points farthest from those already chosen), devices taking
turns, so every device keeps choices across its whole latency range.
"""

from __future__ import annotations

import datetime
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adacomp.errors import AdacompError
from adacomp.platform.evaluate.evaluators.supernet import supernet_options, weighted_layers
from adacomp.platform.results.job_dir import JobDir
from adacomp.platform.results.ledger import Ledger, TrialRecord
from adacomp.platform.results.snapshot import STATE_FILE, model_file
from adacomp.platform.results.tracking import KIND_TAG, SEARCH_TAG, SearchTracker
from adacomp.platform.search_config import Log, SearchConfig, as_search_config, silent
from adacomp.platform.supernet.ort_format import add_ort_models
from adacomp.platform.supernet.search import SubnetRecord, device_front, load_records, supernet_search_job
from adacomp.platform.supernet_training.training import supernet_dir
from adacomp.runtime.manifest import (
    MANIFEST_NAME,
    SCHEMA_VERSION,
    Manifest,
    file_sha256,
    save_manifest,
    verify_files,
)
from adacomp.search_spaces.export import INPUT_NAME, OUTPUT_NAME
from adacomp.search_spaces.supernet import Supernet, config_of
from adacomp.tasks import load_task, pretrained_model

Metrics = dict[str, float | None]


def _spread(front: Sequence[SubnetRecord], device: str) -> list[SubnetRecord]:
    """`front` ordered so that any prefix covers its latency/accuracy range evenly."""
    if len(front) <= 2:
        return list(front)
    lat = [math.log(r.metrics[f"latency_{device}"]) for r in front]
    acc = [r.metrics["accuracy"] for r in front]

    def scaled(values: list[float]) -> list[float]:
        low, high = min(values), max(values)
        return [(v - low) / (high - low) if high > low else 0.0 for v in values]

    points = list(zip(scaled(lat), scaled(acc), strict=True))
    order = [min(range(len(front)), key=lambda i: lat[i]), max(range(len(front)), key=lambda i: acc[i])]
    order = list(dict.fromkeys(order))
    while len(order) < len(front):
        rest = [i for i in range(len(front)) if i not in order]
        order.append(max(rest, key=lambda i: min(math.dist(points[i], points[j]) for j in order)))
    return [front[i] for i in order]


def choose_configurations(
    records: Sequence[SubnetRecord], devices: Sequence[str], baseline: Metrics, size: int
) -> list[SubnetRecord]:
    """At most `size` configurations covering every device's front (see the module docstring)."""
    queues = [_spread(device_front(records, d, baseline), d) for d in devices]
    chosen: dict[str, SubnetRecord] = {}
    while len(chosen) < size and any(queues):
        for queue in queues:
            while queue and queue[0].config.hash in chosen:
                queue.pop(0)
            if queue and len(chosen) < size:
                record = queue.pop(0)
                chosen[record.config.hash] = record
    return sorted(chosen.values(), key=lambda r: -r.metrics["accuracy"])


def _costs(metrics: Metrics, device: str) -> dict[str, float | None]:
    return {
        "latency_ms": metrics.get(f"latency_{device}"),
        "energy_mj": metrics.get(f"energy_{device}"),
        "memory_mb": metrics.get(f"memory_{device}"),
    }


@dataclass(frozen=True)
class BundleResult:
    directory: Path
    manifest: Manifest
    run_id: str
    registered_model: str


def export_bundle(
    config: SearchConfig | str | Path,
    *,
    out: Path | None = None,
    log: Log | None = None,
) -> BundleResult:
    """Writes the bundle (default `<output.dir>/<name>/bundle/`), logs it to MLflow, registers it."""
    say = log or silent
    config = as_search_config(config)
    if config.evaluation == "supernet":
        state, records, models = _from_search(config)
    else:
        state, records, models = _from_supernet_search(config)
    baseline: Metrics = state["baseline"]
    chosen = choose_configurations(records, config.targets, baseline, config.supernet.bundle_size)
    if not chosen:
        raise AdacompError(
            f"no feasible configuration in the search of {config.name!r} "
            f"({len(records)} evaluated); loosen the constraints or evaluate more"
        )
    target = (out or config.output.dir / config.name / "bundle").resolve()
    if target.exists() and any(target.iterdir()) and not (target / MANIFEST_NAME).is_file():
        raise AdacompError(f"out: {target} exists and is not a bundle; give an empty or new directory")
    manifest = _write_bundle(config, models, chosen, baseline, target)
    say(f"bundle: {len(manifest.configurations)} configurations in {target}")
    run_id, registered = _log_bundle(config, state, manifest, target)
    say(f"registered as {registered}")
    return BundleResult(target, manifest, run_id, registered)


def _from_supernet_search(config: SearchConfig) -> tuple[dict[str, Any], list[SubnetRecord], dict[str, Path]]:
    """`adacomp supernet search`'s state, its evaluated configurations and their models."""
    source = supernet_dir(config)
    state = supernet_search_job(config).load()
    records = load_records(source)
    if not state or not records:
        raise AdacompError(
            f"no supernet search for {config.name!r} in {source}; run `adacomp search` with "
            "evaluation: supernet (or `adacomp supernet search`) first"
        )
    return state, records, {r.config.hash: source / "models" / f"{r.config.hash}.onnx" for r in records}


def _from_search(config: SearchConfig) -> tuple[dict[str, Any], list[SubnetRecord], dict[str, Path]]:
    """A supernet-mode search's state, its finished plans as the configurations they extract
    (the search's front is the bundle), and the models its trials measured."""
    out_dir = (config.output.dir / config.name).resolve()
    state = JobDir(out_dir, STATE_FILE, f"search {config.name!r}").load()
    finished = Ledger[TrialRecord](out_dir / "trials.jsonl").load()
    if not state or not finished:
        raise AdacompError(
            f"no finished supernet-mode search for {config.name!r} in {out_dir}; run `adacomp search` first"
        )
    trials = [r for r in finished if r.feasible]
    task = load_task(config.task)
    model = pretrained_model(task, seed=config.seed)
    supernet = Supernet.build(model, task.example_input(2), supernet_options(config))
    weighted = weighted_layers(model)
    records, models = [], {}
    for trial in trials:
        subnet = config_of(supernet, trial.plan, weighted)
        metrics = {k: v for k, v in trial.metrics.items() if v is not None}
        records.append(
            SubnetRecord(
                trial.number, subnet, metrics=metrics, utility=trial.utility, violations=trial.violations
            )
        )
        models[subnet.hash] = model_file(out_dir, trial.plan)
    return state, records, models


def _write_bundle(
    config: SearchConfig,
    models: Mapping[str, Path],
    chosen: Sequence[SubnetRecord],
    baseline: Metrics,
    target: Path,
) -> Manifest:
    """The bundle is built beside `target`, verified, then swapped in whole: a reader never sees
    half a bundle, and an earlier bundle there is replaced, not mixed."""
    directory = target.with_name(f".{target.name}.partial")
    shutil.rmtree(directory, ignore_errors=True)
    (directory / "models").mkdir(parents=True)
    entries = []
    for record in chosen:
        name = f"models/{record.config.hash}.onnx"
        shutil.copyfile(models[record.config.hash], directory / name)
        entries.append(
            {
                "id": record.config.hash,
                "file": name,
                "sha256": file_sha256(directory / name),
                "bytes": (directory / name).stat().st_size,
                "architecture": record.config.to_dict(),
                "accuracy": record.metrics["accuracy"],
                "storage_bytes": int(record.metrics["storage"]),
                "devices": {d: _costs(dict(record.metrics), d) for d in config.targets},
            }
        )
    ort_models, ort_operators = add_ort_models(directory, [str(entry["file"]) for entry in entries])
    for entry, ort_model in zip(entries, ort_models, strict=True):
        entry["ort"] = ort_model.to_dict()
    task = load_task(config.task)
    data = {
        "schema_version": SCHEMA_VERSION,
        "name": config.name,
        "task": config.task,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "input": {"name": INPUT_NAME, "shape": [None, *task.input_shape], "dtype": "float32"},
        "output": {"name": OUTPUT_NAME},
        "utility": (config.supernet.runtime_utility or config.utility).model_dump(),
        "devices": list(config.targets),
        "baseline": {
            "accuracy": baseline["accuracy"],
            "storage_bytes": int(baseline["storage"] or 0),
            "devices": {d: _costs(baseline, d) for d in config.targets},
        },
        "configurations": entries,
        "ort_operators": ort_operators.to_dict(),
    }
    manifest = Manifest.from_dict(data, source="bundle manifest")
    save_manifest(manifest, directory)
    verify_files(directory, manifest)
    if target.exists():
        shutil.rmtree(target)
    directory.rename(target)
    return manifest


def _log_bundle(
    config: SearchConfig, state: Mapping[str, Any], manifest: Manifest, bundle: Path
) -> tuple[str, str]:
    """A child run of the supernet search holding the bundle, registered as a new version of
    `<name>-bundle`; returns (run id, `models:/...`)."""
    tracker = SearchTracker.for_config(config, state["tracking_uri"])
    run_id = tracker.start_run(
        f"{config.name}-bundle",
        {KIND_TAG: "bundle", SEARCH_TAG: config.name},
        parent_id=state["parent_run_id"],
    )
    tracker.log_metrics(
        run_id,
        {
            "configurations": float(len(manifest.configurations)),
            "bundle_bytes": float(sum(c.bytes for c in manifest.configurations)),
        },
    )
    tracker.log_directory(run_id, bundle, artifact_path="bundle")
    registered = tracker.register_directory(
        f"{config.name}-bundle",
        run_id,
        "bundle",
        description="adacomp runtime bundle (manifest + ONNX and ORT format models)",
        tags={
            "adacomp.schema_version": str(SCHEMA_VERSION),
            "adacomp.configurations": str(len(manifest.configurations)),
        },
    )
    tracker.finish(run_id)
    return run_id, registered
