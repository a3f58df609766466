"""What leads a user to a search's result in the MLflow UI, as pure functions: the deep links,
the saved front view, the display metrics (valid MLflow names, rounded, in their units), the
Markdown of `front.md` and of the descriptions, the ONNX signature, and `adacomp ui`'s command.
The end-to-end checks (a real store, a real server, a real browser) are in test_search.py."""

from __future__ import annotations

import argparse
import json

import pytest
from mlflow.utils.validation import _validate_metric_name

from adacomp.platform.results import mlflow_ui
from adacomp.platform.results.descriptions import front_markdown, search_description, version_description
from adacomp.platform.results.ledger import TrialRecord
from adacomp.platform.results.snapshot import SearchSnapshot
from adacomp.platform.search_config import SearchConfig
from adacomp.search_spaces import CompressionPlan, Step

CONFIG = SearchConfig.model_validate(
    {
        "name": "ui",
        "task": "digits",
        "targets": ["pixel4"],
        "objectives": [
            {"metric": "accuracy"},
            {"metric": "latency", "target": "pixel4"},
            {"metric": "storage"},
        ],
        "constraints": [{"metric": "storage", "max": 500_000}],
    }
)
BASELINE = {"accuracy": 0.98, "accuracy_drop": 0.0, "latency_pixel4": 0.2, "storage": 623_592.0}
LONG_PLAN = CompressionPlan.from_mapping(
    {f"features.{i}.conv|x": [Step.of("channel_prune", ratio=0.123456789)] for i in range(6)}
)


def _record(
    number: int, accuracy: float, latency: float, storage: float, plan: CompressionPlan
) -> TrialRecord:
    metrics = {"accuracy": accuracy, "accuracy_drop": 100 * (0.98 - accuracy), "latency_pixel4": latency}
    metrics["storage"] = storage
    return TrialRecord(
        number,
        plan,
        metrics=metrics,
        utility=0.5 + number / 100,
        violations=(),
        seconds=2.5,
        finished_at=1000.0 + number,
    )


SMALL = CompressionPlan.from_mapping({"fc1": [Step.of("low_rank", rank_fraction=0.25)]})
RECORDS = [_record(0, 0.97, 0.15, 200_000, LONG_PLAN), _record(1, 0.96, 0.1, 100_000, SMALL)]
SNAPSHOT = SearchSnapshot(CONFIG, BASELINE, RECORDS, run_id="parent123", tracking_uri=None, out_dir=None)


def test_links_open_the_training_view_and_quote_what_they_name() -> None:
    assert mlflow_ui.run_path("3", "abc") == "#/experiments/3/runs/abc?workflowType=machine_learning"
    assert mlflow_ui.model_version_path("my model", "2") == (
        "#/models/my%20model/versions/2?workflowType=machine_learning"
    )
    assert (
        mlflow_ui.runs_path("3", "k1")
        == "#/experiments/3/runs?workflowType=machine_learning&viewStateShareKey=k1"
    )
    filtered = mlflow_ui.runs_path("3", None, "tags.`adacomp.pareto` = 'true'")
    assert "viewStateShareKey" not in filtered and "searchFilter=tags.%60adacomp.pareto%60" in filtered
    # The UI drops a saved view when the link also filters: a view key wins over a filter.
    assert "searchFilter" not in mlflow_ui.runs_path("3", "k1", "x")
    assert mlflow_ui.absolute("http://h:5000/", "#/x") == "http://h:5000/#/x"
    artifact = mlflow_ui.artifact_path("3", "abc", "pareto/pareto.html")
    assert artifact.startswith("#/experiments/3/runs/abc/artifactPath/pareto/pareto.html?")


def test_the_front_view_filters_sorts_and_shows_the_objectives_in_their_units() -> None:
    view = mlflow_ui.front_view(["accuracy", "latency_pixel4", "storage"], "parent123")
    assert view["searchFilter"] == "tags.`adacomp.pareto` = 'true'"
    assert view["orderByKey"] == "metrics.`utility score`" and view["orderByAsc"] is False
    assert view["selectedColumns"] == [
        "metrics.`accuracy in percent`",
        "metrics.`latency_pixel4 in ms`",
        "metrics.`storage in KiB`",
        "metrics.`utility score`",
        "params.`plan`",
    ]
    assert view["runsExpanded"] == {"parent123": True}
    same = mlflow_ui.front_view(["accuracy", "latency_pixel4", "storage"], "parent123")
    assert mlflow_ui.view_key(view) == mlflow_ui.view_key(same) != mlflow_ui.view_key({**view, "x": 1})
    json.dumps(view)  # what the UI parses from the experiment tag


def test_display_metrics_are_valid_mlflow_names_rounded_in_their_units() -> None:
    shown = mlflow_ui.display_metrics(
        {
            "accuracy": 0.972512,
            "storage": 623_592,
            "latency_pixel4": 0.412345,
            "accuracy_drop": 1.23456,
            "energy_pixel4": 3.14159,
            "memory_pixel4": 8.60601,
            "utility": 0.7731573,
            "macs": 731_392,  # no unit: not repeated
            "latency_x": float("nan"),
        }
    )
    assert shown == {
        "accuracy in percent": 97.25,
        "storage in KiB": 609.0,
        "latency_pixel4 in ms": 0.412,
        "accuracy_drop in pt": 1.23,
        "energy_pixel4 in mJ": 3.142,
        "memory_pixel4 in MiB": 8.606,
        "utility score": 0.7732,
    }
    for name in shown:
        _validate_metric_name(name)  # raises on a name MLflow refuses
        assert mlflow_ui.is_display_metric(name)
    assert not any(mlflow_ui.is_display_metric(k) for k in ("accuracy", "latency_pixel4", "utility"))


def test_markdown_cells_escape_pipes_and_newlines() -> None:
    table = mlflow_ui.markdown_table(["trial", "plan"], [["1", "a | b\nc"]])
    lines = table.splitlines()
    assert lines[0] == "| trial | plan |" and lines[1] == "|:---|:---|"
    assert lines[2] == "| 1 | a \\| b c |"


def test_front_md_is_a_markdown_table_with_full_plans_and_units() -> None:
    text = front_markdown(SNAPSHOT)
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("| trial"))
    assert lines[head] == (
        "| trial | accuracy (%) | latency_pixel4 (ms) | storage (KiB) | accuracy_drop (pt) | utility | plan |"
    )
    rows = lines[head + 2 : head + 5]
    assert rows[0].startswith("| uncompressed | 98.00 | 0.2 | 609 | 0.00 |")
    assert all(row.count(" | ") == 6 for row in rows), "every row has seven cells (pipes escaped)"
    assert "features.5.conv\\|x: channel_prune(ratio=0.123456789)" in text, "the plan in full"
    assert "★" in text and "uncompressed model alone scores 1.0000" in text


def test_the_search_description_links_each_trial_the_model_and_the_plots() -> None:
    text = search_description(SNAPSHOT, "7", {0: "run0", 1: "run1"}, "key1", "models:/ui/3")
    assert "[0](#/experiments/7/runs/run0?workflowType=machine_learning)" in text
    assert "[1](#/experiments/7/runs/run1?workflowType=machine_learning) ★" in text
    assert "[ui version 3](#/models/ui/versions/3?workflowType=machine_learning)" in text
    assert (
        "[the front's runs](#/experiments/7/runs?workflowType=machine_learning&viewStateShareKey=key1)"
        in text
    )
    assert "[pareto.html](#/experiments/7/runs/parent123/artifactPath/pareto/pareto.html?" in text
    assert "Hypervolume" in text and "reference point" in text


def test_the_version_description_lists_metrics_beside_the_baseline_and_the_plan_by_layer() -> None:
    text = version_description(SNAPSHOT, RECORDS[0], "7", "run0")
    assert text.startswith(
        "[Trial 0](#/experiments/7/runs/run0?workflowType=machine_learning) of search `ui`"
    )
    assert "| storage (KiB) | 195.3 | 609 |" in text and "| accuracy (%) | 97.00 | 98.00 |" in text
    assert sum(line.startswith("- `features.") for line in text.splitlines()) == 6


def test_the_onnx_signature_is_read_from_the_graph() -> None:
    import onnx
    import torch

    from adacomp.platform.results.tracking import onnx_signature
    from adacomp.search_spaces import export_onnx

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    signature = onnx_signature(onnx.load_from_string(export_onnx(model, torch.randn(2, 1, 8, 8))))
    (inp,), (out,) = signature.inputs.inputs, signature.outputs.inputs
    assert inp.name == "input" and inp.shape == (-1, 1, 8, 8) and str(inp.type) == "float32"
    assert out.shape == (-1, 10)


@pytest.mark.parametrize(("given", "workers"), [([], "1"), (["--workers", "3"], "3")])
def test_ui_serves_with_one_worker_unless_told_and_without_the_job_runner(
    given: list[str], workers: str
) -> None:
    from adacomp.platform.cli.main import build_parser
    from adacomp.platform.cli.search import ui_command, ui_environment

    args = build_parser().parse_args(["ui", "--store", "sqlite:///x.db", *given])
    assert isinstance(args, argparse.Namespace)
    command = ui_command(args)
    assert command[command.index("--workers") + 1] == workers
    assert ui_environment()["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
