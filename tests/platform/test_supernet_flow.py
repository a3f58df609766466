"""End to end, AdaSpring side: supernet train -> search -> export, with real MLflow and ORT.

One flow runs once for the module on a tiny budget (30 training steps, 6 configurations, two
emulated targets); the tests check what each stage left behind and that it resumes or refuses.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from mlflow import MlflowClient

from adacomp.errors import AdacompError
from adacomp.platform.cli.main import main
from adacomp.platform.evaluate.pareto import dominates
from adacomp.platform.search_config import Objective, Output, SearchConfig
from adacomp.platform.supernet.bundle import BundleResult, export_bundle
from adacomp.platform.supernet.ort_format import OPERATORS_CONFIG
from adacomp.platform.supernet.search import SupernetSearchResult, device_objectives, supernet_search
from adacomp.platform.supernet_training.training import TrainResult, train_supernet_job
from adacomp.runtime import AdaptiveModel
from adacomp.runtime.manifest import load_manifest, verify_files
from adacomp.runtime.session import declared_session_config, open_session
from adacomp.tasks import evaluate_onnx, load_task

pytestmark = pytest.mark.slow
TARGETS = ("pixel4", "snapdragon450")


def flow_config(out: Path, **changes: object) -> SearchConfig:
    data: dict[str, object] = {
        "name": "ada",
        "task": "tests.platform.tiny_task:tiny_digits",
        "targets": list(TARGETS),
        "objectives": [
            {"metric": "accuracy"},
            {"metric": "latency", "target": "pixel4"},
            {"metric": "storage"},
        ],
        "constraints": [{"metric": "accuracy_drop", "max": 60}],
        "utility": {"accuracy": 1.0, "latency": 0.2, "storage": 0.3},
        "seed": 1,
        "output": {"dir": str(out)},
        "supernet": {
            "steps": 30,
            "checkpoint_every": 10,
            "batch_size": 32,
            "lr": 0.003,
            "trials": 6,
            "bundle_size": 3,
            "precisions": ["fp32", "int8", "int8_weights"],
            "threads": 1,
        },
    }
    data.update(changes)
    return SearchConfig.model_validate(data)


@dataclass(frozen=True)
class Flow:
    config: SearchConfig
    trained: TrainResult
    searched: SupernetSearchResult
    bundle: BundleResult
    threads: tuple[int, int]  # torch threads before and after training (threads: 1 inside)


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Flow:
    config = flow_config(tmp_path_factory.mktemp("supernet"))
    before = torch.get_num_threads()
    trained = train_supernet_job(config)
    threads = (before, torch.get_num_threads())
    searched = supernet_search(config)
    return Flow(config, trained, searched, export_bundle(config), threads)


def test_training_leaves_weights_layout_and_an_mlflow_run(flow: Flow) -> None:
    assert flow.threads[0] == flow.threads[1]  # `threads: 1` applied to training only
    assert flow.trained.steps == 30 and flow.trained.resumed_from == 0
    assert (flow.trained.directory / "supernet.safetensors").is_file()
    assert "fixed fc2" in flow.trained.layout and (flow.trained.directory / "layout.json").is_file()
    client = MlflowClient(flow.trained.tracking_uri)
    run = client.get_run(flow.trained.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["adacomp.kind"] == "supernet-train"
    history = client.get_metric_history(flow.trained.run_id, "loss_largest")
    assert [m.step for m in history] == [10, 20, 30]
    assert [m.step for m in client.get_metric_history(flow.trained.run_id, "val_accuracy_smallest")] == [
        10,
        20,
        30,
    ]
    artifacts = {a.path for a in client.list_artifacts(flow.trained.run_id)}
    assert {"layout.json", "supernet.safetensors"} <= artifacts
    # The alternative branches were distilled to their layer's output before step 1, logged.
    assert "alternatives: features.conv1 (depthwise_separable)" in flow.trained.layout
    fitted = client.get_metric_history(flow.trained.run_id, "branch_error.fc1.gap_head")
    assert len(fitted) == 1 and fitted[0].value >= 0


def test_training_again_needs_resume_and_a_finished_one_resumes_as_a_no_op(flow: Flow) -> None:
    with pytest.raises(AdacompError, match=r"already exists.*resume=True"):
        train_supernet_job(flow.config)
    again = train_supernet_job(flow.config, resume=True)
    assert again.resumed_from == 30 and again.steps == 30 and again.run_id == flow.trained.run_id
    with pytest.raises(AdacompError, match="supernet: settings differ"):
        train_supernet_job(
            flow.config.model_copy(
                update={"supernet": flow.config.supernet.model_copy(update={"width": (0.5, 1.0)})}
            ),
            resume=True,
        )


def test_search_evaluates_the_ends_first_and_every_target(flow: Flow) -> None:
    assert len(flow.searched.records) == 6 and not any(r.failed for r in flow.searched.records)
    largest, largest_int8, smallest = (r.config for r in flow.searched.records[:3])
    ends = (largest.precision, largest_int8.precision, smallest.precision)
    assert ends == ("fp32", "int8_weights", "int8_weights")
    assert largest.width == largest_int8.width and largest.skip == ()
    # int8 storage at float speed: the artifact tells ORT to fold its weight dequantization
    stored = (flow.searched.directory / "models" / f"{smallest.hash}.onnx").read_bytes()
    assert declared_session_config(stored) == {"session.disable_quant_qdq": "1"}
    assert all(w > s for (_, w), (_, s) in zip(largest.width, smallest.width, strict=True))
    for record in flow.searched.records:
        for target in TARGETS:
            assert record.metrics[f"latency_{target}"] > 0
        assert (flow.searched.directory / "models" / f"{record.config.hash}.onnx").is_file()


def test_the_largest_configuration_is_the_trained_model_itself(flow: Flow) -> None:
    """Ensemble training moves the shared weights; the largest fp32 configuration is still the
    user's model (same accuracy as the baseline), so the bundle never tops out below it."""
    largest = flow.searched.records[0]
    assert largest.config.precision == "fp32"
    assert largest.metrics["accuracy"] == flow.searched.baseline["accuracy"]
    assert largest.metrics["storage"] == flow.searched.baseline["storage"]


def test_per_device_fronts_are_the_non_dominated_feasible_configurations(flow: Flow) -> None:
    for device in TARGETS:
        objectives = device_objectives(device, flow.searched.baseline)
        front = flow.searched.front(device)
        assert front and all(r.feasible for r in front)

        vectors = {
            r.config.hash: tuple(-r.metrics[k] if mode == "max" else r.metrics[k] for k, mode in objectives)
            for r in flow.searched.records
            if r.feasible
        }
        brute = {h for h, v in vectors.items() if not any(dominates(o, v) for o in vectors.values())}
        assert {r.config.hash for r in front} == brute
        assert (flow.searched.directory / f"front_{device}.csv").read_text().count("\n") == len(front) + 1
        assert (flow.searched.directory / f"pareto_{device}.png").stat().st_size > 1000


def test_search_is_tracked_in_mlflow_like_any_search(flow: Flow) -> None:
    client = MlflowClient(flow.searched.tracking_uri)
    parent = client.get_run(flow.searched.run_id)
    assert parent.data.tags["adacomp.kind"] == "supernet-search" and parent.info.status == "FINISHED"
    assert parent.data.metrics["configurations"] == 6
    assert parent.data.metrics["hypervolume_pixel4"] > 0
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{flow.searched.run_id}'"
    )
    configs = [c for c in children if c.data.tags.get("adacomp.config_hash")]
    assert len(configs) == 6
    on_front = {
        c.data.tags["adacomp.config_hash"] for c in configs if c.data.tags["adacomp.pareto.pixel4"] == "true"
    }
    assert on_front == {r.config.hash for r in flow.searched.front("pixel4")}
    files = {a.path for a in client.list_artifacts(flow.searched.run_id, "pareto")}
    assert {"pareto/front_pixel4.csv", "pareto/pareto_snapdragon450.png"} <= files
    # Its description: each device's front as a table, each configuration linked to its run.
    description = parent.data.tags["mlflow.note.content"]
    for device in ("pixel4", "snapdragon450"):
        assert f"**Front on {device}**" in description
        assert f"| configuration | accuracy (%) | latency_{device} (ms) | storage (KiB) |" in description
    by_hash = {c.data.tags["adacomp.config_hash"]: c.info.run_id for c in configs}
    for record in flow.searched.front("pixel4"):
        assert f"/runs/{by_hash[record.config.hash]}?" in description
    assert all("accuracy in percent" in c.data.metrics for c in configs if c.data.metrics.get("accuracy"))


def test_search_resumes_without_re_evaluating_and_refuses_a_second_start(flow: Flow) -> None:
    with pytest.raises(AdacompError, match=r"supernet search.*already exists"):
        supernet_search(flow.config)
    again = supernet_search(flow.config, resume=True)
    assert [r.to_dict() for r in again.records] == [r.to_dict() for r in flow.searched.records]
    assert again.run_id == flow.searched.run_id


def test_the_bundle_ships_exactly_what_was_measured(flow: Flow) -> None:
    manifest = load_manifest(flow.bundle.directory)
    verify_files(flow.bundle.directory, manifest)
    assert manifest.devices == TARGETS and 1 <= len(manifest.configurations) <= 3
    records = {r.config.hash: r for r in flow.searched.records}
    fronts = {r.config.hash for d in TARGETS for r in flow.searched.front(d)}
    task = load_task(flow.config.task)
    for entry in manifest.configurations:
        assert entry.id in fronts
        record = records[entry.id]
        assert entry.accuracy == record.metrics["accuracy"]
        assert entry.devices["pixel4"].latency_ms == record.metrics["latency_pixel4"]
        onnx_model = (flow.bundle.directory / entry.file).read_bytes()
        assert evaluate_onnx(onnx_model, task.data.test) == pytest.approx(entry.accuracy)  # no retraining
    assert manifest.baseline.accuracy == flow.searched.baseline["accuracy"]


def test_every_configuration_ships_as_an_ort_model_with_the_same_outputs(flow: Flow) -> None:
    bundle = flow.bundle.directory
    manifest = load_manifest(bundle)
    assert manifest.formats == ("onnx", "ort") and manifest.ort_operators is not None
    x = load_task(flow.config.task).example_input(8).numpy()
    inputs = {manifest.input.name: x}
    precisions = set()
    for entry in manifest.configurations:
        assert entry.ort is not None and entry.ort.file == entry.file.removesuffix(".onnx") + ".ort"
        onnx_out = open_session(bundle / entry.file).run(None, inputs)[0]
        ort_out = open_session(bundle / entry.ort.file).run(None, inputs)[0]
        if "QuantizeLinear" in {node.op_type for node in onnx.load(bundle / entry.file).graph.node}:
            # int8 activations: the .onnx runs ORT's fused int8 kernels (level all), the .ort the QDQ
            # graph (basic); they agree as test_int8_kernels_compute_what_the_qdq_graph_says asks
            precisions.add("int8")
            atol = 1e-3 * float(np.abs(onnx_out).max())
            np.testing.assert_allclose(ort_out, onnx_out, rtol=1e-3, atol=atol, err_msg=entry.id)
        else:
            precisions.add("float")
            np.testing.assert_allclose(ort_out, onnx_out, rtol=1e-5, atol=1e-5, err_msg=entry.id)
    ops = [
        line for line in (bundle / OPERATORS_CONFIG).read_text().splitlines() if line.startswith("ai.onnx;")
    ]
    assert any("Conv" in line for line in ops) and any("Gemm" in line or "MatMul" in line for line in ops)
    model = AdaptiveModel(bundle, "pixel4", model_format="ort")
    model.switch_to(manifest.configurations[0].id)
    assert model.run(x[:3]).shape == (3, 10)
    print(f"ORT parity checked for {len(manifest.configurations)} configurations: {sorted(precisions)}")


def test_the_bundle_is_logged_and_registered_in_mlflow(flow: Flow) -> None:
    client = MlflowClient(flow.searched.tracking_uri)
    assert flow.bundle.registered_model == "models:/ada-bundle/1"
    version = client.get_model_version("ada-bundle", "1")
    assert version.run_id == flow.bundle.run_id and version.source.endswith("/bundle")
    files = {a.path for a in client.list_artifacts(flow.bundle.run_id, "bundle")}
    assert "bundle/manifest.json" in files
    run = client.get_run(flow.bundle.run_id)
    assert run.data.tags["mlflow.parentRunId"] == flow.searched.run_id


def test_cli_runs_the_stages_and_explains_missing_ones(
    flow: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh = tmp_path / "fresh.yaml"
    fresh.write_text(
        "name: none\ntask: digits\ntargets: [pixel4]\nobjectives: [{metric: accuracy}]\n"
        f"output: {{dir: {tmp_path / 'runs'}}}\n"
    )
    assert main(["supernet", "search", str(fresh)]) == 2
    assert "run `adacomp supernet train` first" in capsys.readouterr().err
    assert main(["export", str(fresh)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "`adacomp supernet search`) first" in err
    manifest = load_manifest(flow.bundle.directory)
    assert np.isfinite(manifest.configurations[0].accuracy)


def test_the_runtime_adapts_with_the_exported_bundle(
    flow: Flow, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from adacomp.runtime import AdaptiveModel, Context

    model = AdaptiveModel(flow.bundle.directory, "pixel4")
    manifest = load_manifest(flow.bundle.directory)
    fastest = min(manifest.configurations, key=lambda c: c.devices["pixel4"].latency_ms)
    selection = model.adapt(Context(latency_budget_ms=fastest.devices["pixel4"].latency_ms * 1.01))
    assert not selection.fallback
    assert (
        manifest.configuration(selection.id).devices["pixel4"].latency_ms
        <= fastest.devices["pixel4"].latency_ms * 1.01
    )
    task = load_task(flow.config.task)
    logits = model.run(task.example_input(3).numpy())
    assert logits.shape == (3, 10)
    png = tmp_path / "sim.png"
    argv = ["runtime", "simulate", str(flow.bundle.directory), "--device", "pixel4", "--plot", str(png)]
    assert main(argv) == 0
    assert "adaptive" in capsys.readouterr().out and png.stat().st_size > 1000


def test_export_never_overwrites_a_directory_that_is_not_a_bundle(flow: Flow, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(AdacompError, match="exists and is not a bundle"):
        export_bundle(flow.config, out=precious)
    assert (precious / "notes.txt").read_text() == "keep me"
    # A second export of the same search, for a device that trades accuracy first at run time.
    runtime = {"accuracy": 1.0, "latency": 0.0, "energy": 0.05, "storage": 0.0, "memory": 0.0}
    accuracy_first = flow_config(
        flow.config.output.dir, supernet={**flow.config.supernet.model_dump(), "runtime_utility": runtime}
    )
    again = export_bundle(accuracy_first, out=tmp_path / "second")
    assert again.registered_model == "models:/ada-bundle/2"
    second, first = load_manifest(again.directory), load_manifest(flow.bundle.directory)
    assert second.ids == first.ids
    assert second.utility.to_dict() == runtime
    assert first.utility.to_dict() == {**flow.config.utility.model_dump()}
    assert not (tmp_path / ".second.partial").exists()


def test_search_refuses_an_objective_its_devices_cannot_measure(flow: Flow, tmp_path: Path) -> None:
    config = flow.config.model_copy(
        update={
            "targets": ("host",),
            "objectives": (Objective(metric="accuracy"), Objective(metric="energy", target="host")),
            "output": Output(dir=tmp_path),
        }
    )
    (tmp_path / "ada" / "supernet").mkdir(parents=True)
    shutil.copyfile(
        flow.trained.directory / "supernet.safetensors",
        tmp_path / "ada" / "supernet" / "supernet.safetensors",
    )
    with pytest.raises(AdacompError, match="'energy_host' has no value for the uncompressed model"):
        supernet_search(config)
    assert not (tmp_path / "ada" / "supernet" / "configs.jsonl").exists()


def test_a_configuration_evaluated_before_takes_no_slot_and_no_child_run(flow: Flow, tmp_path: Path) -> None:
    """Issue 20 item 3, supernet side: `supernet.trials` counts distinct configurations. The study
    proposes the largest configuration twice, then the smallest twice (enqueued: a sampler that
    repeats itself, as a seeded one does on resume); each repeat is told to Optuna as a duplicate
    and asked past, so the 4 slots hold 4 distinct configurations, one ledger line and one MLflow
    child run each."""
    import optuna

    from adacomp.platform.strategies.optuna_searcher import open_journal
    from adacomp.platform.supernet.search import _params
    from adacomp.platform.supernet_training.training import load_trained_supernet

    settings = flow.config.supernet.model_copy(update={"trials": 4})
    config = flow.config.model_copy(update={"output": Output(dir=tmp_path), "supernet": settings})
    directory = tmp_path / "ada" / "supernet"
    directory.mkdir(parents=True)
    shutil.copyfile(flow.trained.directory / "supernet.safetensors", directory / "supernet.safetensors")
    supernet = load_trained_supernet(config)[2]
    largest, smallest = supernet.space.largest(supernet.space.precisions[0]), supernet.space.smallest()
    name = "adacomp-ada-supernet"
    study = optuna.create_study(
        study_name=name,
        storage=open_journal(directory / "optuna.journal", name),
        directions=["maximize" if o.mode == "max" else "minimize" for o in config.objectives],
    )
    for end in (largest, largest, smallest, smallest):
        study.enqueue_trial(_params(end, supernet))

    searched = supernet_search(config)
    hashes = [r.config.hash for r in searched.records]
    assert len(hashes) == len(set(hashes)) == 4 and hashes[:2] == [largest.hash, smallest.hash]
    trials = optuna.load_study(
        study_name=name, storage=open_journal(directory / "optuna.journal", name)
    ).trials
    repeats = {
        t.number: t.user_attrs["adacomp:duplicate_of"]
        for t in trials
        if "adacomp:duplicate_of" in t.user_attrs
    }
    assert {1: 0, 3: 2}.items() <= repeats.items()
    assert all(trials[n].state == optuna.trial.TrialState.FAIL for n in repeats)
    client = MlflowClient(searched.tracking_uri)
    children = client.search_runs(
        [client.get_run(searched.run_id).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{searched.run_id}'",
    )
    assert sorted(c.data.tags["adacomp.config_hash"] for c in children) == sorted(hashes)
