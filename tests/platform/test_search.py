"""End to end: a real search (real Ray, real Optuna, real MLflow sqlite store) on a tiny budget.

One search runs once for the module (emulated targets, 8 trials, 2 at a time, one plan known to
fail enqueued first); the tests then check what it left: the front against brute force, the
constraints, the failed trial, MLflow's runs and artifacts, the registered model, and the CLI
and MLflow-only readers.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adacomp.device_farm.devices.emulated import EmulatedDevice
from adacomp.errors import AdacompError
from adacomp.platform.evaluate.pareto import dominates
from adacomp.platform.results.front import normalised_hypervolume, objective_vector, pareto_front
from adacomp.platform.results.ledger import Ledger
from adacomp.platform.results.tracking import search_links
from adacomp.platform.search.job import SearchResult, search
from adacomp.search_spaces import CompressionPlan, Step
from tests.helpers.search import search_config
from tests.loopback import free_port

pytestmark = pytest.mark.slow

FAILING_PLAN = CompressionPlan.from_mapping(
    {
        "features.conv1": [Step.of("channel_prune", ratio=0.9)],
        "features.conv2": [Step.of("fire", squeeze_ratio=0.5, expand_1x1_fraction=0.5)],
    }
)
GOOD_PLAN = CompressionPlan.from_mapping({"fc1": [Step.of("low_rank", rank_fraction=0.25)]})
# A second good plan enqueued before the hopeless one: with 2 trials at a time, the hopeless plan
# starts only once one of the good ones has finished, so its first stage is always compared with
# an earlier one (with none recorded yet, MO-ASHA lets the first plan at a rung go on).
MILD_PLAN = CompressionPlan.from_mapping({"fc1": [Step.of("low_rank", rank_fraction=0.5)]})
# Wrecks the network: after one fine-tune step far below the accuracy floor, stopped there.
HOPELESS_PLAN = CompressionPlan.from_mapping(
    {
        "features.conv2": [Step.of("channel_prune", ratio=0.75)],
        "fc1": [Step.of("low_rank", rank_fraction=0.05)],
    }
)
# Leaves fc1 (most of the weights) alone: over the 500 kB storage budget whatever fine-tuning does.
COSTLY_PLAN = CompressionPlan.from_mapping({"fc2": [Step.of("low_rank", rank_fraction=0.5)]})


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, shared_ray: str) -> SearchResult:
    out = tmp_path_factory.mktemp("search")
    return search(
        search_config(out),
        progress=False,
        initial_plans=[FAILING_PLAN, GOOD_PLAN, COSTLY_PLAN, MILD_PLAN, HOPELESS_PLAN],
    )


def test_every_trial_is_recorded_once_and_the_failing_one_did_not_stop_the_search(
    finished: SearchResult,
) -> None:
    numbers = [r.number for r in finished.records]
    assert sorted(numbers) == list(range(8))
    failed = [r for r in finished.records if r.failed]
    assert [r.plan for r in failed if r.plan == FAILING_PLAN], "the enqueued bad plan ran and failed"
    assert "'fire' does not apply" in (failed[0].reason or "")
    assert sum(not r.failed for r in finished.records) >= 6


def test_a_hopeless_plan_stops_after_its_first_stage_and_says_so(finished: SearchResult) -> None:
    """Multi-fidelity (stages end at 1, 2 and 5 steps): the wrecked plan scores below the good
    one after its first stage and is stopped there, recorded with its rung, in MLflow too, and
    never on the front; every plan that went on has both stages scored."""
    from mlflow import MlflowClient

    from adacomp.platform.evaluate.rungs import STOPPED_EARLY

    hopeless = next(r for r in finished.records if r.plan == HOPELESS_PLAN)
    assert hopeless.stopped_at == 0 and (hopeless.reason or "").startswith(STOPPED_EARLY)
    assert [r.steps for r in hopeless.rungs] == [1] and hopeless.metrics["finetune_steps"] == 1.0
    assert hopeless.number not in {r.number for r in finished.front_records}
    for record in finished.records:
        if not record.failed and record.stopped_at is None and record.metrics.get("finetune_steps") == 5.0:
            assert [r.steps for r in record.rungs] == [1, 2], record.number
    client = MlflowClient(finished.tracking_uri)
    child = client.search_runs(
        [client.get_run(finished.run_id).info.experiment_id],
        filter_string=f"tags.`adacomp.trial` = '{hopeless.number}'",
    )[0]
    assert child.data.tags["adacomp.stopped_at_rung"] == "0"
    assert [m.step for m in client.get_metric_history(child.info.run_id, "rung_accuracy")] == [1]


def test_front_is_exactly_the_non_dominated_feasible_trials(finished: SearchResult) -> None:
    config = finished.config
    feasible = [r for r in finished.records if r.feasible and objective_vector(config, r.metrics)]

    def minimised(record: object) -> tuple[float, ...]:
        vector = objective_vector(config, record.metrics)  # type: ignore[attr-defined]
        assert vector is not None
        return tuple(-v if o.mode == "max" else v for v, o in zip(vector, config.objectives, strict=True))

    brute = {
        r.number
        for r in feasible
        if not any(dominates(minimised(q), minimised(r)) for q in feasible if q is not r)
    }
    assert {r.number for r in finished.front_records} == brute
    assert brute, "a loose config must leave something on the front"
    table = finished.front
    assert table.iloc[0]["trial"] == "baseline" and len(table) == len(brute) + 1


def test_a_plan_over_a_cost_budget_is_never_fine_tuned_and_the_sampler_hears_of_it(
    finished: SearchResult,
) -> None:
    """Cost first: storage is known before training, so a plan over the budget stops there
    (0 fine-tune steps, its reason recorded, in MLflow too) and every other one trains its 5 steps
    unless multi-fidelity stopped it after a stage;
    its Optuna trial is COMPLETE with a positive constraint value, which the sampler reads."""
    import optuna
    from mlflow import MlflowClient

    from adacomp.platform.evaluate.rungs import STOPPED_EARLY
    from adacomp.platform.evaluate.trial import COST_INFEASIBLE
    from adacomp.platform.strategies.optuna_searcher import open_journal

    trials = Ledger(finished.out_dir / "trials.jsonl").load()  # the search's own numbers, before any polish
    ran = [r for r in trials if not r.failed and r.duplicate_of is None]
    costly = next(r for r in ran if r.plan == COSTLY_PLAN)
    assert costly.reason is not None and costly.reason.startswith(COST_INFEASIBLE) and not costly.feasible
    for record in ran:
        over_budget = record.metrics["storage"] > 500_000  # type: ignore[operator]
        if record.stopped_at is not None:  # multi-fidelity stopped it after a short fine-tune
            assert not over_budget and (record.reason or "").startswith(STOPPED_EARLY)
            assert record.metrics["finetune_steps"] == record.rungs[-1].steps < 5.0
            continue
        assert record.metrics["finetune_steps"] == (0.0 if over_budget else 5.0), record.number
        assert (record.reason is not None) == over_budget
    client = MlflowClient(finished.tracking_uri)
    child = client.search_runs(
        [client.get_run(finished.run_id).info.experiment_id],
        filter_string=f"tags.`adacomp.trial` = '{costly.number}'",
    )[0]
    assert child.data.tags["adacomp.stop_reason"].startswith(COST_INFEASIBLE)
    assert child.data.metrics["finetune_steps"] == 0.0
    storage = open_journal(finished.out_dir / "optuna.journal", "adacomp-e2e")
    trial = optuna.load_study(study_name="adacomp-e2e", storage=storage).trials[costly.number]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    told = [v for k, v in trial.system_attrs.items() if k.startswith("constraints:")]
    assert told and max(told) > 0


def test_constraints_are_respected(finished: SearchResult) -> None:
    for record in finished.front_records:
        assert record.metrics["accuracy_drop"] <= 40  # type: ignore[operator]
        assert record.metrics["storage"] <= 500_000  # type: ignore[operator]
    best = finished.best
    assert best is not None and best.feasible
    assert best.utility == max(r.utility for r in finished.records if r.feasible)  # type: ignore[type-var]


def test_mlflow_holds_parent_children_front_and_registered_model(finished: SearchResult) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(finished.tracking_uri)
    parent = client.get_run(finished.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["strategy"] == "random"
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{finished.run_id}'"
    )
    assert sorted(int(c.data.tags["adacomp.trial"]) for c in children) == list(range(8))
    on_front = {
        int(c.data.tags["adacomp.trial"]) for c in children if c.data.tags.get("adacomp.pareto") == "true"
    }
    assert on_front == {r.number for r in finished.front_records}
    failed = [c for c in children if c.data.tags["adacomp.failed"] == "true"]
    assert failed and failed[0].info.status == "FAILED" and "adacomp.failure_reason" in failed[0].data.tags
    # what measured every number: on the search's run and on each trial's (identity.py)
    pixel4 = EmulatedDevice("pixel4", "pixel4").identity()
    assert parent.data.tags["adacomp.device.pixel4"] == pixel4 and pixel4.startswith(
        "emulated pixel4 (profile "
    )
    assert all(c.data.tags["adacomp.device.pixel4"] == pixel4 for c in children)
    artifacts = {a.path for a in client.list_artifacts(finished.run_id, "pareto")}
    expected = {"front.csv", "front.parquet", "front.md", "pareto.png", "pareto.html"}
    assert {f"pareto/{name}" for name in expected} <= artifacts
    history = client.get_metric_history(finished.run_id, "hypervolume")
    assert [m.step for m in history] == list(range(1, 9))
    trials = Ledger(finished.out_dir / "trials.jsonl").load()  # the curve is the trials', before the polish
    assert history[-1].value == pytest.approx(
        normalised_hypervolume(finished.config, trials, finished.baseline)
    )
    assert parent.data.metrics["hypervolume_final"] == pytest.approx(finished.hypervolume)
    assert finished.registered_model == "models:/e2e/1"
    version = client.get_model_version("e2e", "1")
    assert version.tags["adacomp.plan_hash"] == finished.best.plan.hash  # type: ignore[union-attr]


def test_the_front_is_polished_and_the_polished_model_is_registered(finished: SearchResult) -> None:
    """The best three of the trials' front are fine-tuned again (3 x 5 steps, distilled): their
    polished numbers are the search's records, front and registered model; each child run
    keeps the trial's own numbers and gains the polished ones."""
    from mlflow import MlflowClient

    trials = Ledger(finished.out_dir / "trials.jsonl").load()
    polished = Ledger(finished.out_dir / "polished.jsonl").load()
    front_before = pareto_front(finished.config, trials)
    assert len(polished) == min(3, len(front_before)) >= 1
    assert {p.number for p in polished} <= {r.number for r in front_before}
    by_number = {r.number: r for r in finished.records}
    for record in polished:
        assert record.polished and record.metrics["finetune_steps"] == 15.0
        assert by_number[record.number] == record, "the search's records carry the polished numbers"
        assert (
            finished.model_path(record)
            == finished.out_dir / "models" / "polished" / f"{record.plan.hash}.onnx"
        )
    best = finished.best
    assert best is not None
    client = MlflowClient(finished.tracking_uri)
    version = client.get_model_version("e2e", "1")
    assert version.tags["adacomp.polished"] == str(best.polished).lower()
    child = client.search_runs(
        [client.get_run(finished.run_id).info.experiment_id],
        filter_string=f"tags.`adacomp.trial` = '{polished[0].number}'",
    )[0]
    trial = next(r for r in trials if r.number == polished[0].number)
    assert child.data.metrics["accuracy"] == pytest.approx(trial.metrics["accuracy"])
    assert child.data.metrics["polished_accuracy"] == pytest.approx(polished[0].metrics["accuracy"])
    assert child.data.tags["adacomp.polished"] == "true"


def test_best_model_file_runs_in_onnx_runtime(finished: SearchResult) -> None:
    import onnxruntime as ort

    best = finished.best
    assert best is not None
    session = ort.InferenceSession(str(finished.model_path(best)))
    assert session.get_inputs()[0].name == "input"


def test_pareto_reads_the_directory_and_the_mlflow_run(
    finished: SearchResult, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from adacomp.platform.cli.main import main
    from adacomp.platform.results.snapshot import open_search_run

    assert main(["pareto", str(finished.out_dir)]) == 0
    out = capsys.readouterr().out
    assert "8/8 trials finished, 1 failed" in out and "baseline" in out
    links = search_links(finished.tracking_uri, finished.run_id)  # on `adacomp ui`'s default port
    assert links["front"] in out and "workflowType=machine_learning&viewStateShareKey=adacomp-" in out
    assert links["search run"] in out and links["registered model"] in out
    # From MLflow alone (the directory moved away): the same front.
    state = json.loads((finished.out_dir / "search.json").read_text())
    moved = finished.out_dir.parent / "moved"
    finished.out_dir.rename(moved)
    try:
        snapshot = open_search_run(state["parent_run_id"], finished.tracking_uri)
        assert snapshot.out_dir is None
        assert {r.number for r in snapshot.front_records} == {r.number for r in finished.front_records}
    finally:
        moved.rename(finished.out_dir)


def test_running_it_again_without_resume_is_refused_and_resume_is_a_no_op(
    finished: SearchResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resume with every trial and polish recorded neither starts nor joins Ray (seconds)."""
    from adacomp.platform.search import job

    with pytest.raises(
        AdacompError, match=r"output: search 'e2e' already exists .* continue it with resume=True"
    ):
        search(finished.config, progress=False)

    def no_ray(*args: object, **kwargs: object) -> object:
        raise AssertionError("a finished search started Ray to resume")

    monkeypatch.setattr(job, "init_ray", no_ray)
    again = search(finished.config, resume=True, progress=False)
    assert [r.to_dict() for r in again.records] == [r.to_dict() for r in finished.records]
    assert again.run_id == finished.run_id and again.registered_model == finished.registered_model


def test_resuming_with_a_different_measurement_is_refused(finished: SearchResult) -> None:
    changed = finished.config.model_copy(update={"targets": ("pixel4",)})
    with pytest.raises(AdacompError, match=r"^targets: differs from the search being resumed"):
        search(changed, resume=True, progress=False)


@dataclass(frozen=True)
class Ui:
    base: str
    stdout: Path  # what `adacomp ui` printed before MLflow's server took over


@pytest.fixture(scope="module")
def ui(finished: SearchResult, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    """`adacomp ui` on the search's store, on a free loopback port, as a user starts it."""
    import os
    import signal
    import subprocess
    import sys

    port = free_port()
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    command = [sys.executable, "-m", "adacomp.platform.cli", "ui", "--store", finished.tracking_uri]
    printed = tmp_path_factory.mktemp("ui") / "stdout.txt"
    with printed.open("w") as out:
        server = subprocess.Popen(
            [*command, "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: mlflow ui and its uvicorn worker
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if _get(base, "/health") == b"OK":
                    break
            except OSError:
                pass
            assert server.poll() is None, "mlflow ui exited"
            assert time.monotonic() < deadline, "mlflow ui did not come up"
            time.sleep(0.5)
        yield Ui(base, printed)
    finally:
        os.killpg(server.pid, signal.SIGKILL)  # the whole group: the server and its worker
        server.wait(timeout=30)


def _get(base: str, endpoint: str, **query: str) -> bytes:
    url = f"{base}{endpoint}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


def test_mlflow_ui_serves_the_parent_its_children_and_the_pareto_artifacts(
    finished: SearchResult, ui: Ui
) -> None:
    """`adacomp ui` really serves the search: checked through the UI server's REST API and its
    artifact endpoint on loopback (the browser test below checks what a user sees)."""
    base = ui.base
    assert b"<html" in _get(base, "/").lower()
    parent = json.loads(_get(base, "/api/2.0/mlflow/runs/get", run_id=finished.run_id))["run"]
    assert parent["info"]["run_name"] == "e2e"
    request = urllib.request.Request(
        f"{base}/api/2.0/mlflow/runs/search",
        data=json.dumps(
            {
                "experiment_ids": [parent["info"]["experiment_id"]],
                "filter": f"tags.`mlflow.parentRunId` = '{finished.run_id}'",
            }
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        children = json.loads(response.read())["runs"]
    assert len(children) == 8
    listed = json.loads(_get(base, "/api/2.0/mlflow/artifacts/list", run_id=finished.run_id, path="pareto"))
    assert {"pareto/pareto.html", "pareto/front.csv"} <= {f["path"] for f in listed["files"]}
    front_csv = _get(base, "/get-artifact", path="pareto/front.csv", run_uuid=finished.run_id).decode()
    assert front_csv.splitlines()[1].startswith("baseline,")
    html = _get(base, "/get-artifact", path="pareto/pareto.html", run_uuid=finished.run_id)
    assert b"plotly" in html.lower()
    # What it printed before serving: this search's deep links, on the port it serves.
    printed = ui.stdout.read_text()
    links = search_links(finished.tracking_uri, finished.run_id, base)
    assert "search e2e:" in printed and links["front"] in printed and links["search run"] in printed


def test_the_ui_runs_one_server_worker_and_no_job_runner(finished: SearchResult, ui: Ui) -> None:
    """Four uvicorn workers and a job runner were 2.2 GB on a 2-core machine: one worker now,
    as its command line says, and MLflow's GenAI job runner off."""
    import psutil

    port = ui.base.rsplit(":", 1)[1]
    servers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "uvicorn" in " ".join(p.info["cmdline"] or []) and port in " ".join(p.info["cmdline"] or [])
    ]
    assert len(servers) == 1, [s.info["cmdline"] for s in servers]
    assert "--workers" in servers[0].info["cmdline"]
    assert servers[0].info["cmdline"][servers[0].info["cmdline"].index("--workers") + 1] == "1"
    everything = " ".join(" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"]))
    assert "huey_consumer" not in everything


def test_the_parent_run_and_the_experiment_describe_the_result(finished: SearchResult) -> None:
    """The parent run's description is the front as a Markdown table, each trial linked to its
    run, the registered version linked, the hypervolume explained; the experiment says what its
    runs are; the saved view opens the front's trials with their columns."""
    from mlflow import MlflowClient

    from adacomp.platform.results.mlflow_ui import FRONT_VIEW_TAG, NOTE_TAG, SHARED_VIEW_TAG

    client = MlflowClient(finished.tracking_uri)
    parent = client.get_run(finished.run_id)
    experiment = client.get_experiment(parent.info.experiment_id)
    children = {int(c.data.tags["adacomp.trial"]): c.info.run_id for c in _children(finished)}
    description = parent.data.tags[NOTE_TAG]
    assert "| trial | accuracy (%) | latency_pixel4 (ms) | storage (KiB) |" in description
    for record in finished.front_records:
        link = f"#/experiments/{experiment.experiment_id}/runs/{children[record.number]}?"
        assert f"[{record.number}]({link}" in description
    assert (
        "[e2e version 1](#/models/e2e/versions/1?workflowType=machine_learning)" in description
        and "`champion`" in description
    )
    assert "reference point" in description and "uncompressed model alone scores 1.0000" in description
    assert "adacomp.pareto = true" in experiment.tags[NOTE_TAG]
    view = json.loads(experiment.tags[SHARED_VIEW_TAG + parent.data.tags[FRONT_VIEW_TAG]])
    assert view["searchFilter"] == "tags.`adacomp.pareto` = 'true'"
    assert "metrics.`accuracy in percent`" in view["selectedColumns"]
    assert "metrics.`latency_pixel4 in ms`" in view["selectedColumns"]
    assert view["runsExpanded"] == {finished.run_id: True}


def test_trial_runs_show_when_they_really_ran_and_their_numbers_in_display_units(
    finished: SearchResult,
) -> None:
    records = {r.number: r for r in Ledger(finished.out_dir / "trials.jsonl").load()}
    for child in _children(finished):
        record = records[int(child.data.tags["adacomp.trial"])]
        assert child.info.end_time == int(record.finished_at * 1000)
        duration = (child.info.end_time - child.info.start_time) / 1000
        assert duration == pytest.approx(max(record.seconds, 0.001), abs=0.002)
        if record.metrics.get("accuracy") is not None and not child.data.tags.get("adacomp.polished"):
            assert child.data.metrics["accuracy in percent"] == round(100 * record.metrics["accuracy"], 2)
            assert child.data.metrics["storage in KiB"] == round(record.metrics["storage"] / 1024, 1)


def test_the_registered_version_has_a_description_the_champion_alias_and_a_signature(
    finished: SearchResult,
) -> None:
    import mlflow
    from mlflow import MlflowClient

    best = finished.best
    assert best is not None
    client = MlflowClient(finished.tracking_uri)
    version = client.get_model_version_by_alias("e2e", "champion")
    assert str(version.version) == "1"
    assert f"Trial {best.number}]" in version.description
    assert (
        "| accuracy (%) |" in version.description and "| latency_snapdragon450 (ms) |" in version.description
    )
    for layer, _ in best.plan:
        assert f"- `{layer}`:" in version.description
    mlflow.set_tracking_uri(finished.tracking_uri)
    info = mlflow.models.get_model_info("models:/e2e@champion")
    signature = info.signature
    assert signature is not None
    (spec,) = signature.inputs.inputs
    assert spec.name == "input" and spec.shape[0] == -1 and spec.shape[1:] == (1, 8, 8)
    logged = mlflow.get_logged_model(info.model_id)
    assert {m.key for m in logged.metrics or []} >= {"accuracy", "storage", "latency_pixel4"}


def test_the_optuna_study_names_its_objectives(finished: SearchResult) -> None:
    import optuna

    from adacomp.platform.strategies.optuna_searcher import open_journal

    storage = open_journal(finished.out_dir / "optuna.journal", "adacomp-e2e")
    study = optuna.load_study(study_name="adacomp-e2e", storage=storage)
    assert study.metric_names == ["accuracy", "latency_pixel4", "storage"]


def _children(finished: SearchResult) -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(finished.tracking_uri)
    experiment = client.get_run(finished.run_id).info.experiment_id
    return list(
        client.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = '{finished.run_id}'")
    )


def test_a_user_following_the_printed_links_sees_the_front_the_description_the_plot_and_the_champion(
    finished: SearchResult, ui: Ui, tmp_path: Path
) -> None:
    """In a real browser (Debian's headless Chromium), from the links `adacomp ui` prints: the
    front's trial runs listed with their columns, the parent run's description table, the
    interactive pareto.html inside MLflow's artifact viewer, the registered version with its
    alias. Screenshots are kept in the test's temporary directory."""
    from tests import browser

    reason = browser.missing()
    if reason is not None:
        pytest.skip(f"browser test: {reason}")
    from selenium.webdriver.common.by import By

    best = finished.best
    assert best is not None
    links = search_links(finished.tracking_uri, finished.run_id, ui.base)
    front = {f"trial-{r.number:04d}" for r in finished.front_records}
    others = {f"trial-{r.number:04d}" for r in finished.records} - front

    def text(driver: Any) -> str:
        return str(driver.find_element(By.TAG_NAME, "body").text)

    with browser.chromium() as driver:
        # 1. The front: its trials and no other, in the training-runs view, with unit columns.
        driver.get(links["front"])
        browser.wait_for(driver, lambda d: front <= set(text(d).split()), "the front's trial runs")
        shown = text(driver)
        assert not others & set(shown.split()), "only the front's trials are listed"
        assert "accuracy in percent" in shown and "storage in KiB" in shown
        browser.screenshot(driver, tmp_path / "1-front-runs.png")

        # 2. The search's run: its description, the front as a table with each trial linked.
        driver.get(links["search run"])
        browser.wait_for(driver, lambda d: "Pareto front" in text(d), "the run's description")
        more = driver.find_elements(By.XPATH, "//*[self::button or self::a][contains(., 'Show more')]")
        if more:
            more[0].click()
        table = browser.wait_for(
            driver,
            lambda d: next(
                (t for t in d.find_elements(By.TAG_NAME, "table") if "storage (KiB)" in t.text), None
            ),
            "the description's front table",
        )
        trial_links = [a.get_attribute("href") or "" for a in table.find_elements(By.TAG_NAME, "a")]
        assert any(f"/runs/{finished.run_id}" not in h and "/runs/" in h for h in trial_links)
        assert "uncompressed" in table.text and "★" in table.text
        browser.screenshot(driver, tmp_path / "2-search-run.png")

        # 3. pareto.html rendered by plotly inside the artifact viewer's frame.
        driver.get(links["search run"].replace("?", "/artifactPath/pareto/pareto.html?"))
        frame = browser.wait_for(
            driver, lambda d: next(iter(d.find_elements(By.TAG_NAME, "iframe")), None), "the artifact frame"
        )
        driver.switch_to.frame(frame)
        browser.wait_for(
            driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .main-svg"), "a plotly plot"
        )
        hover = driver.execute_script(
            "return document.querySelector('.js-plotly-plot').data.map(t => t.hovertemplate || '')"
        )
        assert any("utility" in h and "KiB" in h for h in hover)
        driver.switch_to.default_content()
        browser.screenshot(driver, tmp_path / "3-pareto-html.png")

        # 4. The registered version: its alias and its description.
        driver.get(links["registered model"])
        browser.wait_for(driver, lambda d: "champion" in text(d), "the version's alias")
        assert f"Trial {best.number} of search" in text(driver)
        browser.screenshot(driver, tmp_path / "4-registered-version.png")
    assert len(list(tmp_path.glob("*.png"))) == 4
