"""One search, one supernet (issue 37), end to end on the tiny digits task with a real local Ray,
MLflow store and onnxruntime: `evaluation: supernet` trains the supernet once as the search's
first job, scores every plan by extraction with no fine-tune step, logs what the training cost
beside the trials, reuses the supernet when resumed; the search's front is the bundle that
`adacomp export` writes and `adacomp runtime simulate` replays, switching between its
configurations. Bad input is refused in one line before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from adacomp.errors import AdacompError
from adacomp.platform.cli.main import main
from adacomp.platform.results.ledger import Ledger, TrialRecord
from adacomp.platform.results.snapshot import SearchResult
from adacomp.platform.search.job import search
from adacomp.platform.search_config import SearchConfig
from adacomp.platform.supernet_training.training import training_cost
from adacomp.search_spaces import CompressionPlan, Step
from tests.helpers.search import search_config

# The selector runs the most accurate configuration that fits the context (examples/digits.yaml).
SUPERNET = {
    "steps": 20,
    "checkpoint_every": 10,
    "bn_batches": 2,
    "bundle_size": 4,
    "runtime_utility": {"accuracy": 1.0},
}


def _config(out: Path, **changes: object) -> SearchConfig:
    data: dict[str, object] = {
        "evaluation": "supernet",
        "trials": 6,
        "supernet": SUPERNET,
        "polish": {"top_k": 1},
        "constraints": [{"metric": "accuracy_drop", "max": 60}],
    }
    return search_config(out, **{**data, **changes})


def _yaml(path: Path, config: SearchConfig) -> Path:
    path.write_text(yaml.safe_dump(json.loads(config.model_dump_json(exclude_none=True))))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, shared_ray: str) -> tuple[SearchResult, list[str]]:
    said: list[str] = []
    result = search(_config(tmp_path_factory.mktemp("supernet-mode")), progress=False, log=said.append)
    return result, said


def test_the_supernet_is_trained_once_and_every_plan_is_scored_without_a_fine_tune_step(
    finished: tuple[SearchResult, list[str]],
) -> None:
    result, said = finished
    assert any("training it once for the whole search (20 ensemble steps)" in line for line in said)
    # the supernet's uniform plans come first, the mildest first, a third of the budget at most:
    # the whole model at int8, then every elastic layer at 0.75 (nearest: 8 of 16 channels is 0.5)
    uniform = [r for r in Ledger[TrialRecord](result.out_dir / "trials.jsonl").load() if r.number < 2]
    kinds = [
        {
            (s.technique, s.kwargs.get("ratio", s.kwargs.get("precision")))
            for _, steps in r.plan.layers
            for s in steps
        }
        for r in uniform
    ]
    assert kinds[0] == {("quantize", "int8")}
    assert ("channel_prune", 0.25) in kinds[1] and ("quantize", "int8") in kinds[1]
    assert (result.out_dir / "supernet" / "supernet.safetensors").is_file()
    records = Ledger[TrialRecord](result.out_dir / "trials.jsonl").load()
    assert len(records) == 6
    scored = [r for r in records if not r.failed]
    assert scored, [r.reason for r in records]
    assert all(r.metrics["finetune_steps"] == 0.0 and not r.rungs for r in scored)
    techniques = {s.technique for r in records for _, steps in r.plan.layers for s in steps}
    assert techniques <= {
        "channel_prune",
        "low_rank",
        "depthwise_separable",
        "gap_head",
        "quantize",
        "skip_block",
    }
    assert result.front_records
    polished = Ledger[TrialRecord](result.out_dir / "polished.jsonl").load()
    assert len(polished) == 1 and polished[0].metrics["finetune_steps"] > 0  # the front's best, fine-tuned


def test_the_supernets_cost_is_logged_beside_the_trials(finished: tuple[SearchResult, list[str]]) -> None:
    from mlflow import MlflowClient

    result, _ = finished
    metrics = MlflowClient(result.tracking_uri).get_run(result.run_id).data.metrics
    assert metrics["supernet_steps"] == 20 and metrics["supernet_reused"] == 0.0
    assert metrics["supernet_train_seconds"] > 0
    # kept with the weights: a search that reuses them reports what they cost
    assert training_cost(result.config) == (20, metrics["supernet_train_seconds"])


def test_the_front_is_the_bundle_that_the_runtime_switches_between(
    finished: tuple[SearchResult, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result, _ = finished
    config = _yaml(tmp_path / "search.yaml", result.config)
    assert main(["export", str(config)]) == 0
    bundle = result.out_dir / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    front = {r.number for r in result.front_records}
    assert 2 <= len(manifest["configurations"]) <= SUPERNET["bundle_size"]
    ids = {c["id"] for c in manifest["configurations"]}
    assert len(ids) == len(manifest["configurations"]) and front
    report = tmp_path / "sim.json"
    assert main(["runtime", "simulate", str(bundle), "--json", str(report)]) == 0
    adaptive = json.loads(report.read_text())["adaptive"]["summary"]
    assert adaptive["switches"] >= 1 and adaptive["configurations_used"] >= 2
    assert "switch" in capsys.readouterr().out


def test_a_resumed_search_reuses_its_supernet(finished: tuple[SearchResult, list[str]]) -> None:
    result, _ = finished
    said: list[str] = []
    more = result.config.model_copy(update={"trials": 8})
    search(more, resume=True, progress=False, log=said.append)
    assert any("reusing the trained supernet" in line for line in said)
    assert not any("training it once" in line for line in said)
    assert len(Ledger[TrialRecord](result.out_dir / "trials.jsonl").load()) == 8


def test_a_technique_the_supernet_lacks_is_refused_in_one_line_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs"
    config = _config(out).model_dump(mode="json", exclude_none=True)
    config["techniques"] = ["channel_prune", "fire"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["search", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("adacomp: error:") and "\n" not in err
    assert "'fire' has no alternative in the supernet" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (
            CompressionPlan.from_mapping({"features.conv2": [Step.of("channel_prune", ratio=0.9)]}),
            "plan layer 'features.conv2'.*the supernet holds",
        ),
        (
            CompressionPlan.from_mapping({"features.conv2": [Step.of("depthwise_separable", multiplier=2)]}),
            "plan layer 'features.conv2'.*holds depthwise_separable with multiplier=1 only",
        ),
        (
            CompressionPlan.from_mapping({"features.conv2": [Step.of("fire", squeeze_ratio=0.5)]}),
            "holds no alternative for 'fire'",
        ),
        (
            CompressionPlan.from_mapping({"features": [Step.of("skip_block")]}),
            "plan layer 'features': skip_block: not a skippable block of this supernet",
        ),
    ],
)
def test_a_plan_the_supernet_cannot_express_is_refused_before_the_supernet_trains(
    tmp_path: Path, plan: CompressionPlan, message: str
) -> None:
    config = _config(tmp_path / "runs")
    with pytest.raises(AdacompError, match=message) as refused:
        search(config, progress=False, initial_plans=[plan])
    assert "initial plan 0" in str(refused.value) and "\n" not in str(refused.value)
    assert not (tmp_path / "runs" / "e2e" / "supernet").exists()
