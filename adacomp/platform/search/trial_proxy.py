"""Tune's trainable: a light trial actor whose plan is evaluated by a pooled Ray worker.

Every Tune trial actor is a new process, and a process that evaluates a plan first imports
torch, ONNX, ONNX Runtime and torch's exporter: about 7 s of CPU on a 2-core machine, paid twice
per search (two trials at a time), for trials that often compute less than that. So the trial
actor only holds the trial's resources and relays: it imports nothing of the compression stack,
and hands the evaluation to `evaluate_pooled`, a zero-CPU Ray task pinned to the actor's own
node, submitted by the driver's `EvaluationRelay` (a task's worker dies with the task's owner,
and trial actors come and go; the relay lives as long as the driver). Ray keeps the worker
processes of finished tasks and hands them the next task of the same driver, so every search
after the first in a process (a notebook, the nightly job, a benchmark, the test suite)
evaluates in warm workers; `init_local_ray` keeps them warm between searches (ray_farm.py).
The price is paid once per process: the first search starts the relay and the light trial
actors beside the evaluating workers (about 5 s more on 2 cores, measured). Resources stay
exact: the actor holds the trial's CPUs, the task asks for none and runs in their place, on the
same node, while the actor waits.

A GPU trial evaluates in the actor itself: Ray hands a GPU to the process that reserved it, and a
zero-resource task would see none.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune


@dataclass(frozen=True)
class TrialLink:
    """What a trial actor receives (tune.with_parameters): a reference to the search's payload,
    never the payload itself, so that the actor never unpickles torch tensors."""

    payload: Any  # ray.ObjectRef of a trial_worker.TrialPayload
    threads: int  # torch threads for the evaluation: the CPUs the trial reserved
    in_actor: bool  # a GPU trial: evaluated in the actor, which holds the GPU
    relay: str = ""  # the name of the driver's EvaluationRelay
    namespace: str = ""  # and its Ray namespace


def run_trial(params: dict[str, Any], link: TrialLink) -> None:
    """The Tune trainable: one plan evaluated end to end, each stage and the end reported."""
    if link.in_actor:
        from adacomp.platform.search.trial_worker import evaluate_trial

        report, model = evaluate_trial(params, ray.get(link.payload), on_rung_report=tune.report)
        _report_final(report, model)
        return
    relay = ray.get_actor(link.relay, namespace=link.namespace)
    events: Any = relay.stream.remote(
        ray.get_runtime_context().get_node_id(), params, [link.payload], link.threads
    )
    final: tuple[dict[str, Any], bytes | None] | None = None
    ended = False
    try:
        for ref in events:
            kind, report, model = _unwrapped(ref)
            if kind == "rung":
                tune.report(report)  # may never return: Tune stops the trial here (SystemExit)
            elif kind == "done":
                final = (report, model)
        ended = True
    finally:
        if not ended:  # stopped by Tune, or the actor is going away: stop the evaluation too
            ray.cancel(events)
    if final is not None:
        _report_final(*final)


def _unwrapped(ref: Any) -> tuple[str, Any, Any]:
    """An event of the pooled evaluation; an error it raised is raised here as itself."""
    try:
        event: tuple[str, Any, Any] = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        raise exc.as_instanceof_cause() from None  # type: ignore[no-untyped-call]
    return event


def _report_final(report: dict[str, Any], model: bytes | None) -> None:
    if model is None:
        tune.report(report)
        return
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "model.onnx").write_bytes(model)
        tune.report(report, checkpoint=tune.Checkpoint.from_directory(tmp))


@ray.remote(num_cpus=0, max_concurrency=1000)  # type: ignore[call-overload]
class EvaluationRelay:
    """Submits the pooled evaluations and relays their streams; owned by the driver.

    Ray ends the worker of a task whose owner dies mid-task. Were the trial actor the owner,
    every trial Tune stops or replaces would take a warm worker with it; the relay lives as long
    as the driver, so the workers stay warm across trials and searches.
    """

    async def stream(
        self, node: str, params: dict[str, Any], payload: list[Any], threads: int
    ) -> AsyncIterator[tuple[str, Any, Any]]:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(node, soft=False)
        events: Any = evaluate_pooled.options(scheduling_strategy=here).remote(params, payload[0], threads)
        ended = False
        try:
            async for ref in events:
                try:
                    yield await ref
                except ray.exceptions.RayTaskError as exc:
                    raise exc.as_instanceof_cause() from None  # type: ignore[no-untyped-call]
            ended = True
        finally:
            if not ended:  # the trial was stopped: the evaluation ends at its next stage boundary
                ray.cancel(events)


_RELAYS: dict[str, Any] = {}  # the driver's handles: a named actor lives while its handle does


def evaluation_relay(name: str) -> Any:
    """The driver's relay, named so that trial actors find it: this Ray's, or a new one (a handle
    kept from a Ray this process stopped names an actor that is gone)."""
    _RELAYS[name] = EvaluationRelay.options(name=name, get_if_exists=True).remote()  # type: ignore[attr-defined]
    return _RELAYS[name]


@ray.remote(num_cpus=0, max_retries=0)
def evaluate_pooled(params: dict[str, Any], payload: Any, threads: int) -> Iterator[tuple[str, Any, Any]]:
    """A trial's evaluation in a pooled worker, as a stream of events (trial_worker.pooled_events).
    The payload arrives resolved: Ray hands a task its argument's value, not the reference."""
    from adacomp.platform.search.trial_worker import pooled_events

    yield from pooled_events(params, payload, threads)
