"""The CLI: the happy path on a real (tiny-budget) task, and every error path a user can hit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from adacomp.platform.cli.main import main

TINY = "tests.platform.tiny_task:tiny_digits"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ADACOMP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_space_prints_layers_and_writes_a_plan_that_compress_accepts(
    tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.json"
    assert main(["space", "--task", TINY, "--write-example", str(plan)]) == 0
    out = capsys.readouterr().out
    assert "features.conv2" in out and "depthwise_separable" in out and "gap_head" in out
    assert json.loads(plan.read_text())["layers"]

    out_dir = tmp_path / "out"
    assert main(["compress", "--task", TINY, "--plan", str(plan), "--out", str(out_dir)]) == 0
    printed = capsys.readouterr().out
    assert "storage (encoded)" in printed and "accuracy (ONNX)" in printed
    for name in ("model.onnx", "baseline.onnx", "plan.json", "weights.safetensors", "report.json"):
        assert (out_dir / name).is_file(), name
    onnx.checker.check_model(onnx.load(out_dir / "model.onnx"))
    report = json.loads((out_dir / "report.json").read_text())
    assert report["compressed"]["storage_bytes"] < report["baseline"]["storage_bytes"] / 3
    assert report["finetune"]["steps"] == 10


def test_space_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["space", "--task", "mnist1d", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["layers"][0]["type"] == "Conv1d"


def test_space_says_which_layers_are_not_offered_channel_pruning_and_why(
    capsys: pytest.CaptureFixture[str],
) -> None:
    task = "tests.helpers.shuffle_models:shuffle_task"
    assert main(["space", "--task", task]) == 0
    out = capsys.readouterr().out
    assert "not offered:" in out
    assert "stage.1.right.5: no channel_prune: its channels are reshaped further on" in out
    assert "stem.0: no channel_prune: Torch-Pruning cannot build the whole model's channel graph" in out
    assert main(["space", "--task", task, "--json"]) == 0
    withheld = json.loads(capsys.readouterr().out)["withheld"]
    assert {"layer": "conv.0", "technique": "channel_prune"}.items() <= withheld[-1].items()


def test_tasks_lists_the_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "mnist1d" in out and "mobilenet_digits" in out


GOOD_STEP = {"technique": "low_rank", "params": {"rank_fraction": 0.5}}


@pytest.mark.parametrize(
    ("args", "plan", "message"),
    [
        (["--task", TINY], None, "does not exist"),
        (["--task", TINY], "{oops", "not valid JSON"),
        (["--task", "no_such_task"], {"layers": {"fc1": [GOOD_STEP]}}, "unknown task 'no_such_task'"),
        (["--task", "tests.platform.tiny_task:nope"], {"layers": {"fc1": [GOOD_STEP]}}, "nope"),
        (["--task", "tests.platform.tiny_task:not_a_task"], {"layers": {"fc1": [GOOD_STEP]}}, "Task"),
        (["--task", "no_such_module:fn"], {"layers": {"fc1": [GOOD_STEP]}}, "no_such_module"),
        (["--task", TINY], {"layers": {"fc9": [GOOD_STEP]}}, "plan layer 'fc9' is unknown"),
        (
            ["--task", TINY],
            {"layers": {"fc1": [{"technique": "low_rank", "params": {"rank_fraction": 7}}]}},
            "rank_fraction: 7 is outside",
        ),
        (
            ["--task", TINY],
            {"layers": {"fc2": [{"technique": "channel_prune", "params": {"ratio": 0.5}}]}},
            "output layer",
        ),
        (
            ["--task", TINY, "--weights", "missing.safetensors"],
            {"layers": {"fc1": [GOOD_STEP]}},
            "missing.safetensors",
        ),
    ],
)
def test_bad_input_gets_one_line_and_exit_code_2(
    tmp_path: Path,
    cache: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    plan: object,
    message: str,
) -> None:
    plan_path = tmp_path / "plan.json"
    if plan is not None:
        _write(plan_path, plan)
    code = main(["compress", *args, "--plan", str(plan_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err
    assert err.startswith("adacomp: error:") and "\n" not in err
    assert not cache.exists(), "nothing is trained before the input is validated"


def test_out_that_is_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = _write(tmp_path / "plan.json", {"layers": {"fc1": [GOOD_STEP]}})
    _write(tmp_path / "taken", "x")
    assert main(["compress", "--task", TINY, "--plan", str(plan), "--out", str(tmp_path / "taken")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_real_process_exits_2_without_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "adacomp",
            "compress",
            "--task",
            "digits",
            "--plan",
            str(tmp_path / "x.json"),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_every_command_sets_the_function_that_runs_it() -> None:
    """`main()` is `args.run(args)`: a command group that forgets `set_defaults(run=...)` fails here."""
    import argparse

    from adacomp.platform.cli.main import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(commands.choices) >= {"compress", "space", "tasks", "farm", "search", "pareto", "ui"}
    for name, sub in commands.choices.items():
        assert callable(sub.get_default("run")), name


def test_library_messages_name_the_flags_of_the_command_that_ran() -> None:
    """Core errors name options as Python keywords; the CLI shows the flags of the command run,
    and leaves alone a name that is not one of them (a config field)."""
    from adacomp.platform.cli.main import as_command_line, build_parser, invoked_flags

    parser = build_parser()
    export = invoked_flags(parser, parser.parse_args(["export", "c.yaml"]))
    assert as_command_line("out: /x is not a bundle", export) == "--out: /x is not a bundle"
    train = invoked_flags(parser, parser.parse_args(["supernet", "train", "c.yaml"]))
    assert (
        as_command_line("output: it exists; continue it with resume=True, or change 'name'", train)
        == "output: it exists; continue it with --resume, or change 'name'"
    )
    submit = invoked_flags(parser, parser.parse_args(["submit", "c.yaml", "--address", "http://h:8265"]))
    assert (
        as_command_line("c.yaml: outside; pass working_dir=DIR", submit)
        == "c.yaml: outside; pass --working-dir DIR"
    )
    assert as_command_line("date: bad", submit) == "date: bad"  # not an option of submit


def test_space_shows_groups_and_the_sensitivity_table(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["space", "--task", "mobilenet_digits", "--grouping", "block"]) == 0
    out = capsys.readouterr().out
    # 53 layers in 21 choices, and each block with a shortcut a choice of its own (skip_block)
    assert "53 compressible layers, 13 skippable blocks, 34 choices (grouping block)" in out
    assert "blocks.block8.layers.expand.conv+6" in out  # one choice for 7 expand convs
    assert main(["space", "--task", TINY, "--sensitivity", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["grouping"] == "layer" and data["sensitivity"]["probes"]
    assert main(["space", "--task", TINY, "--sensitivity"]) == 0
    assert "drop at each level" in capsys.readouterr().out


def test_an_unusable_environment_setting_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ADACOMP_EXPORT_MEMO_MIB is read by every process that exports (each trial worker): the CLI
    refuses a bad value first, before it reads the plan or trains anything."""
    monkeypatch.setenv("ADACOMP_EXPORT_MEMO_MIB", "lots")
    code = main(
        ["compress", "--task", "digits", "--plan", str(tmp_path / "missing.json"), "--out", str(tmp_path)]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err == (
        "adacomp: error: ADACOMP_EXPORT_MEMO_MIB='lots': expected a number of MiB >= 0 "
        "(0 turns the export memo off)"
    )
    monkeypatch.setenv("ADACOMP_EXPORT_MEMO_MIB", "0")
    assert main(["tasks"]) == 0
