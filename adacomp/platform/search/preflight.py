"""Before a search runs: what it is (its identity, refused when a resume changes it), its
directory and saved state, its MLflow store, and the baseline every trial is measured against."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from adacomp.device_farm.identity import differs
from adacomp.errors import AdacompError
from adacomp.platform.evaluate.trial import MeasuresModels, TrialContext, baseline_metrics
from adacomp.platform.results.job_dir import JobDir
from adacomp.platform.results.ledger import Ledger, TrialRecord
from adacomp.platform.results.snapshot import (
    POLISHED_FILE,
    STATE_FILE,
)
from adacomp.platform.search.polish import polish_candidates
from adacomp.platform.search_config import SearchConfig

# Supernet settings that say how its training runs or what a bundle ships, not what it measures.
SUPERNET_RUNNING = frozenset({"workers", "threads", "checkpoint_every", "bundle_size", "runtime_utility"})
# Fields that define what a search measures: a resumed search must not change them.
IDENTITY_FIELDS = (
    "task",
    "targets",
    "objectives",
    "constraints",
    "utility",
    "finetune",
    "seed",
    "measure",
    "techniques",
    "space",
    "fidelity",
)


# --- the driver ------------------------------------------------------------------------------
def identity(config: SearchConfig) -> dict[str, Any]:
    """What a resumed search must share with the one it continues. A supernet-mode search adds
    its evaluation and the supernet's settings (what every plan's numbers come from); a
    fine-tune search's identity is what it always was, so earlier searches still resume."""
    dumped = json.loads(config.model_dump_json())
    identity = {k: dumped[k] for k in IDENTITY_FIELDS}
    if config.evaluation != "finetune":
        supernet = {k: v for k, v in dumped["supernet"].items() if k not in SUPERNET_RUNNING}
        identity.update(evaluation=config.evaluation, supernet=supernet)
    return identity


def check_objectives_measurable(config: SearchConfig, baseline: dict[str, float | None]) -> None:
    for objective in config.objectives:
        if baseline.get(objective.key) is None:
            raise AdacompError(
                f"objectives: {objective.key!r} has no value for the uncompressed model "
                f"(device {objective.target!r} cannot measure {objective.metric}); "
                "remove it or pick another device"
            )


def job_baseline(
    ctx: TrialContext, state: Mapping[str, Any], say: Callable[[str], None]
) -> dict[str, float | None]:
    """A resumed job's saved baseline, else the uncompressed model measured now (and refused
    when an objective cannot be measured on it); set on `ctx` either way."""
    if state:
        baseline: dict[str, float | None] = state["baseline"]
    else:
        say("measuring the uncompressed model on " + ", ".join(ctx.config.targets))
        baseline = baseline_metrics(ctx)
        check_objectives_measurable(ctx.config, baseline)
    ctx.baseline = baseline
    return baseline


def device_identities(
    farm: MeasuresModels, config: SearchConfig, state: Mapping[str, Any], say: Callable[[str], None]
) -> dict[str, str]:
    """What each target device is (device_farm/identity.py), asked where it is attached. A
    resumed search whose device is now another machine than the one it started on says so in
    one line: its measurements from then on are that machine's, and the store never mixes them."""
    found = {target: farm.identity(target) for target in config.targets}
    started = state.get("devices") or {}
    for target, now in found.items():
        if differs(started.get(target), now):
            say(f"device {target!r} is not what this search started on ({started[target]}), it is {now}")
    return found


def nothing_left(config: SearchConfig, out_dir: Path, state: Mapping[str, Any]) -> bool:
    """A resumed search whose every trial and every polish of its front is recorded: what
    `_run` would do is read the ledgers and print, so Ray (seconds to start) is not needed.
    The same conditions `_run` and `polish_front` test, read from the same files."""
    if not state:
        return False
    records = Ledger[TrialRecord](out_dir / "trials.jsonl").load()
    if config.trials - len(records) > 0:
        return False
    if not config.polish.top_k:
        return True
    polished = {r.number for r in Ledger[TrialRecord](out_dir / POLISHED_FILE).load()}
    return all(r.number in polished for r in polish_candidates(config, records))


def job_dir(config: SearchConfig, out_dir: Path) -> JobDir:
    return JobDir(out_dir, STATE_FILE, f"search {config.name!r}")


def open_job(config: SearchConfig, out_dir: Path, resume: bool) -> dict[str, Any]:
    """The search's saved state ({} for a new one); a clash with an existing search is refused."""
    return job_dir(config, out_dir).open(
        resume=resume,
        identity=identity(config),
        existing=lambda: f" ({len(Ledger(out_dir / 'trials.jsonl').load())} finished trials)",
        changed=lambda fields: (
            f"{fields[0]}: differs from the search being resumed in {out_dir}; "
            "a resumed search must measure the same way (change 'name' to start a new one)"
        ),
    )


def tracking_uri_of(config: SearchConfig, state: Mapping[str, Any]) -> str:
    """The config's store, else the one a resumed search used, else the default next to the output."""
    from adacomp.platform.results.tracking import default_tracking_uri

    uri = config.output.tracking_uri or state.get("tracking_uri") or default_tracking_uri(config.output.dir)
    return str(uri)
