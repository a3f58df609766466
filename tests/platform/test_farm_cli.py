"""`adacomp farm ...` end to end on this machine (host device, real store, real agent process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adacomp.device_farm import MeasurementStore
from adacomp.platform.cli.main import main
from tests.helpers.tiny_onnx import tiny_model


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "m.onnx"
    path.write_bytes(tiny_model().data)
    return path


@pytest.fixture
def host_only(tmp_path: Path) -> Path:
    path = tmp_path / "farm.yaml"
    path.write_text("devices:\n  - {name: cpu, kind: host, class: host}\n")
    return path


def test_measure_prints_and_stores(
    tmp_path: Path, model_file: Path, host_only: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    args = [
        "farm",
        "measure",
        str(model_file),
        "--device",
        "cpu",
        "--config",
        str(host_only),
        "--store",
        str(store),
    ]
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["source"] == "measured" and data["device"] == "cpu" and data["latency"]["runs"] >= 1
    assert main(args) == 0  # served from the store: same numbers
    assert f"median {data['latency']['median_ms']:.3f} ms" in capsys.readouterr().out
    assert len(MeasurementStore(store).rows()) == 1


def test_list_shows_health(host_only: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["farm", "list", "--config", str(host_only)]) == 0
    out = capsys.readouterr().out
    assert "cpu" in out and "host" in out and " ok " in out


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "does not exist"),
        ("garbage", "not an ONNX model"),
        ("unknown-device", "unknown device 'nope'; devices in the farm: cpu"),
    ],
)
def test_errors_are_one_line_exit_2(
    tmp_path: Path,
    host_only: Path,
    model_file: Path,
    capsys: pytest.CaptureFixture[str],
    setup: str,
    message: str,
) -> None:
    path, device = model_file, "cpu"
    if setup == "missing":
        path = tmp_path / "none.onnx"
    elif setup == "garbage":
        path = tmp_path / "g.onnx"
        path.write_bytes(b"not onnx at all")
    else:
        device = "nope"
    code = main(
        [
            "farm",
            "measure",
            str(path),
            "--device",
            device,
            "--config",
            str(host_only),
            "--store",
            str(tmp_path / "s"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err


def test_agent_refuses_a_short_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "t").write_text("short")
    assert main(["farm", "agent", "--port", "0", "--token-file", str(tmp_path / "t")]) == 2
    assert "at least 16 characters" in capsys.readouterr().err


def test_calibrate_needs_enough_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["farm", "calibrate", "--models", "3", "--out", str(tmp_path)]) == 2
    # The library names the option as Python does ("models: ..."); the CLI as the flag typed.
    assert "adacomp: error: --models: calibration needs 8 to 2000 models" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--threads", "0"], "--threads: expected 1 to 256 intra-op threads, got 0"),
        (["--rounds", "0"], "--rounds: expected 1 to 20 rounds"),
        (["--held-out", "1"], "--held-out: expected 2 to 2000 models"),
        (["--from", "host", "--shots", "1"], "--shots: few-shot calibration needs 2 to 1000"),
        (["--from", "pixel4"], "profile 'pixel4' has no learned kernel model to transfer"),
        (["--from", "nowhere.yaml"], "profile file 'nowhere.yaml' does not exist"),
    ],
)
def test_calibrate_refuses_bad_options_before_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert main(["farm", "calibrate", "--out", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not list(tmp_path.iterdir())  # nothing written
