"""`adacomp runtime simulate`: the summary, --plot and --json on a test bundle; user errors in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adacomp.platform.cli.main import main
from tests.runtime.bundles import manifest_dict, write_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("bundle"))


def test_simulate_prints_the_comparison_and_writes_plot_and_json(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png, report = tmp_path / "out" / "sim.png", tmp_path / "sim.json"
    assert main(["runtime", "simulate", str(bundle), "--plot", str(png), "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "bundle 'digits' (3 configurations) on pixel4, trace drain (120 steps, seed 0)" in out
    assert "steps violating the context" in out and "adaptive" in out and "static" in out
    assert "switch" in out and "violates latency" in out  # the static model breaks the tight phase
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(report.read_text())
    assert data["device"] == "pixel4" and data["static_id"] == "big"
    assert data["adaptive"]["summary"]["violations"] == 0 < data["static"]["summary"]["violations"]
    assert len(data["adaptive"]["steps"]) == 120


def test_simulate_a_trace_file_on_a_device_without_energy(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("t,latency_budget_ms,battery\n0,30,1.0\n1,13,0.8\n2,30,0.5\n")
    argv = ["runtime", "simulate", str(bundle), "--device", "host", "--trace", str(trace), "--static", "tiny"]
    assert main([*argv, "--margin", "0", "--slack", "0"]) == 0
    out = capsys.readouterr().out
    assert "on host" in out and "energy mJ" not in out.splitlines()[1]
    lines = [line.split() for line in out.splitlines()]
    # every step shown: t, battery, budget, (free memory: not in the trace), config, ...
    assert [row[3] for row in lines[3:6]] == ["big", "small", "big"]
    assert [row[-2] for row in lines[4:6]] == ["switch", "switch"]
    assert ["total", "energy", "mJ", "-", "-"] in lines


BAD_LATENCY = manifest_dict()
BAD_LATENCY["configurations"][1]["devices"]["pixel4"]["latency_ms"] = "abc"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "tablet"], "unknown device 'tablet'; manifest 'digits' has: pixel4, host"),
        (["--static", "huge"], "unknown configuration 'huge'"),
        (["--trace", "{missing}"], "missing.csv does not exist"),
        (["--trace", "{bad}"], "bad.csv: line 2, column 'battery': expected a number in [0, 1], got 2.0"),
        (["--steps", "1"], "--steps: expected 2 to 10,000,000, got 1"),
    ],
)
def test_user_errors_end_in_one_line_and_exit_2(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    (tmp_path / "bad.csv").write_text("t,battery\n0,2\n")
    paths = {"missing": str(tmp_path / "missing.csv"), "bad": str(tmp_path / "bad.csv")}
    assert main(["runtime", "simulate", str(bundle), *(a.format(**paths) for a in args)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("adacomp: error: ") and err.count("\n") == 1 and message in err


def test_a_bad_manifest_exits_2_naming_file_and_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = write_bundle(tmp_path / "b", BAD_LATENCY)
    assert main(["runtime", "simulate", str(bundle)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"adacomp: error: {bundle / 'manifest.json'}: configurations[1].devices.pixel4.latency_ms: "
        "expected a number > 0 and <= 1e+12, got 'abc'\n"
    )
    assert main(["runtime", "simulate", str(tmp_path / "nothing")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_a_bad_slack_is_an_argparse_error(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["runtime", "simulate", str(bundle), "--slack", "1.5"])
    assert caught.value.code == 2 and "expected a number in [0, 1)" in capsys.readouterr().err
