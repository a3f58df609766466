"""Ray Tune's OptunaSearch, taught about failed trials and constraints.

Two gaps in the stock searcher: a result without objective values is told to Optuna as
COMPLETE with `None`s (Optuna refuses it), and constraint values never reach the sampler. Here a
failed trial is told as FAIL, and a finished one gets its constraint values with
`Trial.set_constraint` before `tell`, where NSGA-II and TPE look for them.

The study lives in persistent Optuna storage (a journal file next to the search's results), so
a resumed search finds the sampler's whole history there; Tune's own searcher checkpoint is
not needed and is skipped (it would pickle the storage).

A plan already evaluated (or being evaluated) is never a trial again: it would cost a slot of
the budget and an MLflow child run for nothing new. Samplers do propose them: a resumed study
starts its seeded random stream over, so NSGA-II's first generation and TPE's startup trials
repeat the plans the killed run finished; a small space runs out. Such a proposal is told to
Optuna as FAIL with `adacomp:duplicate_of` (samplers skip FAIL trials: the earlier trial already
holds the values) and the sampler is asked again, up to NEW_PLAN_TRIES times in a row; then the
space is taken as exhausted and the search ends short of its budget, saying so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from adacomp.platform.strategies._base import DUPLICATE_OF

FAILED = optuna.trial.TrialState.FAIL
# Proposals of known plans in a row before the space counts as exhausted. Asking is cheap
# (milliseconds); 100 random draws miss the last new plan of a 10-plan space about 1 time in 40,000.
NEW_PLAN_TRIES = 100
P = TypeVar("P")


class ConstrainedOptunaSearch(OptunaSearch):
    def _setup_study(self, mode: str | list[str]) -> None:
        """Optuna's study, its objectives named (`accuracy`, `latency_host`, ...): dashboards
        and `study.trials_dataframe()` label them by name instead of 0, 1, 2."""
        super()._setup_study(mode)
        study: Any = self._ot_study
        name_objectives(study, self._metric)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """The next plan the search has not seen: a proposal that the define-by-run function
        marks as a known plan (key DUPLICATE_OF: the trial number that has it) is told as a
        duplicate and the sampler is asked again; it never becomes a Tune trial. After
        NEW_PLAN_TRIES of them in a row, Tune hears FINISHED: it starts no more trials."""
        for _ in range(NEW_PLAN_TRIES):
            config = super().suggest(trial_id)
            if config is None or DUPLICATE_OF not in config:
                return config
            study: Any = self._ot_study
            tell_duplicate(study, self._ot_trials.pop(trial_id), int(config[DUPLICATE_OF]))
        return Searcher.FINISHED  # type: ignore[return-value]  # Tune's sentinel string

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        study: Any = self._ot_study
        ot_trial = self._ot_trials.pop(trial_id, None)
        if ot_trial is None or trial_id in self._completed_trials:
            return
        self._completed_trials.add(trial_id)
        if error or not result:
            tell_failed(study, ot_trial, "the trial raised" if error else "no objective values")
            return
        tell_result(
            study,
            ot_trial,
            [result.get(m) for m in self.metric],
            result.get("violations", []),
            failure=(result.get("reason") or "failed") if result.get("failed") else None,
        )

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its searcher with the tuner's state; the study (storage, locks, the
        define-by-run closure) stays out: it is reloaded from storage, never unpickled."""
        skip = {"_ot_study", "_storage", "_sampler", "_space", "_ot_trials"}
        return {k: v for k, v in self.__dict__.items() if k not in skip}

    def save(self, checkpoint_path: str) -> None:
        """The persistent Optuna storage is the checkpoint (see the module docstring)."""

    def restore(self, checkpoint_path: str) -> None:
        """Nothing to restore: the study is reloaded from its storage by name."""


def name_objectives(study: optuna.Study, metrics: str | list[str] | None) -> None:
    names = [metrics] if isinstance(metrics, str) else list(metrics or [])
    if names and len(names) == len(study.directions) and study.metric_names != names:
        study.set_metric_names(names)


def tell_failed(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr("adacomp:failure", str(reason)[:500])
    study.tell(trial, state=FAILED)


def ask_new(
    study: optuna.Study, propose: Callable[[optuna.Trial], P], known: Callable[[P], int | None]
) -> tuple[optuna.Trial, P] | None:
    """An ask/tell loop's next new proposal (the supernet search; Tune's goes through `suggest`
    above): the trial and what `propose` made of it, or None when NEW_PLAN_TRIES proposals in a
    row were known (`known` gives the number of the trial that has one, else None)."""
    for _ in range(NEW_PLAN_TRIES):
        trial = study.ask()
        proposal = propose(trial)
        earlier = known(proposal)
        if earlier is None:
            return trial, proposal
        tell_duplicate(study, trial, earlier)
    return None


def tell_duplicate(study: optuna.Study, trial: optuna.Trial, earlier: int) -> None:
    """A proposal of the plan trial `earlier` has (or is evaluating): FAIL, so that no sampler
    counts the plan twice, with the earlier trial's number for whoever reads the study."""
    trial.set_user_attr("adacomp:duplicate_of", earlier)
    study.tell(trial, state=FAILED)


def tell_result(
    study: optuna.Study,
    trial: optuna.Trial,
    values: Sequence[object],
    violations: Sequence[float],
    *,
    failure: str | None = None,
) -> None:
    """The one constrained `tell` of every adacomp search (the Tune searcher above and the
    supernet search): a failed trial, or one without finite values for every objective, is FAIL
    (never a made-up 0); otherwise the constraint values go on the trial first, where NSGA-II
    and TPE read them, then the objective values."""
    if failure is not None:
        tell_failed(study, trial, failure)
        return
    if not values or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        tell_failed(study, trial, "no objective values")
        return
    for i, violation in enumerate(violations):
        trial.set_constraint(f"c{i}", float(violation))
    study.tell(trial, [float(v) for v in values if isinstance(v, (int, float))])


def open_journal(path: Path, study_name: str) -> optuna.storages.BaseStorage:
    """The persistent Optuna storage of a job (a journal file), with trials a killed run left
    RUNNING marked FAIL so that samplers stop waiting on them."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(path)))
    fail_interrupted_trials(storage, study_name)
    return storage


def fail_interrupted_trials(storage: optuna.storages.BaseStorage, study_name: str) -> int:
    """Mark trials left RUNNING by a killed search as FAIL, so samplers stop waiting on them."""
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return 0
    stale = storage.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in stale:
        storage.set_trial_user_attr(trial._trial_id, "adacomp:failure", "interrupted (search killed)")
        storage.set_trial_state_values(trial._trial_id, FAILED)
    return len(stale)
