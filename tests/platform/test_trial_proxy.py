"""A trial's evaluation as the pooled worker runs it (search/trial_proxy.py): the stream of
stage reports and the end, a stop that ends the evaluation at the next stage boundary, and the
same reports whether the evaluation runs through Ray's pooled task or in this process."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import onnx
import pytest

from adacomp.device_farm import MeasureSettings
from adacomp.platform.search.job import farm_for_targets
from adacomp.platform.search.rungs import RungStore
from adacomp.platform.search.trial_worker import TrialPayload, pooled_events
from adacomp.search_spaces import CompressionPlan, Step
from adacomp.tasks import pretrained_model
from tests.helpers.search import search_config
from tests.platform.tiny_task import tiny_digits

PLAN = CompressionPlan.from_mapping({"fc1": [Step.of("magnitude_prune", sparsity=0.5)]})


def _payload(rung_dir: Path, key: str) -> TrialPayload:
    """The tiny task's payload, fine-tuned in 3 stages (9 steps: 1, 3 and 9)."""
    config = search_config(rung_dir.parent, targets=["pixel4"], finetune={"steps": 9})
    task = tiny_digits()
    model = pretrained_model(task)
    return TrialPayload(
        key=key,
        config=config,
        task=task,
        weights=model.state_dict(),
        baseline={"accuracy": 0.9},
        calibration=task.calibration_batches(1, 8),
        settings=MeasureSettings(warmup_runs=1, min_runs=3, max_runs=5),
        farm=farm_for_targets(config),
        rung_dir=rung_dir,
    )


PARAMS = {"plan": PLAN.to_json(indent=None), "trial_number": 0, "seed": 3}


def _without_timing(value: Any) -> Any:
    """A report less what the wall clock decides (seconds taken, when it finished), at any depth."""
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if k not in {"seconds", "finished_at"}}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def test_stages_stream_before_the_end_and_a_stop_ends_at_the_next_boundary(tmp_path: Path) -> None:
    events = list(pooled_events(PARAMS, _payload(tmp_path / "full", "full"), threads=1))
    kinds = [kind for kind, _, _ in events]
    assert kinds == ["rung", "rung", "done"], kinds  # stages 1 and 2, then the end (stage 3)
    _, report, model = events[-1]
    assert not report["failed"] and onnx.load_from_string(model).graph.node  # the artifact, whole

    stopped = pooled_events(PARAMS, _payload(tmp_path / "stopped", "stopped"), threads=1)
    kind, first, _ = next(stopped)
    assert kind == "rung" and first["finetune_steps"] == 1.0
    stopped.close()  # Tune stopped the trial after its first stage
    assert not any(t.name == "adacomp-evaluation" and t.is_alive() for t in threading.enumerate())
    stages = RungStore(tmp_path / "stopped").resume(PLAN)
    assert stages is not None and len(stages.history) == 2  # it ended at the next boundary, not later


@pytest.mark.slow  # Ray workers evaluating for real
@pytest.mark.usefixtures("shared_ray")
def test_the_relayed_pooled_evaluation_reports_what_the_evaluation_in_this_process_reports(
    tmp_path: Path,
) -> None:
    """Through the driver's relay, as a trial actor asks for it; a stopped stream leaves the
    relay serving the next one."""
    import ray

    from adacomp.platform.search.trial_proxy import evaluation_relay

    here = list(pooled_events(PARAMS, _payload(tmp_path / "here", "here"), threads=1))
    relay = evaluation_relay("adacomp-test-relay")
    node = ray.get_runtime_context().get_node_id()
    stopped: Any = relay.stream.remote(node, PARAMS, [ray.put(_payload(tmp_path / "stop", "stop"))], 1)
    assert ray.get(next(stopped))[0] == "rung"
    ray.cancel(stopped)  # Tune stopped the trial after its first stage
    payload = ray.put(_payload(tmp_path / "pooled", "pooled"))
    stream: Any = relay.stream.remote(node, PARAMS, [payload], 1)
    pooled = [ray.get(ref) for ref in stream]
    assert [kind for kind, _, _ in pooled] == [kind for kind, _, _ in here]
    assert [_without_timing(r) for _, r, _ in pooled] == [_without_timing(r) for _, r, _ in here]
    assert len(pooled[-1][2]) > 1000  # the ONNX model came back with the final report


@pytest.mark.slow  # two Ray starts
@pytest.mark.usefixtures("cold_ray")
def test_the_relay_is_this_rays_after_the_process_started_another() -> None:
    """A process that stopped its Ray and started another (a notebook; the suite's `cold_ray`
    tests) gets a relay that trial actors of the new Ray can find."""
    import ray

    from adacomp.platform.search.trial_proxy import evaluation_relay

    for _ in range(2):
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
        try:
            evaluation_relay("adacomp-test-relay-restart")
            found = ray.get_actor("adacomp-test-relay-restart")
            assert ray.get(found.__ray_ready__.remote())  # alive, in this Ray
        finally:
            ray.shutdown()
