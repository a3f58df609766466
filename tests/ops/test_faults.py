"""Faults on one machine, each with what must survive it. Real processes and loopback HTTP; the
only stand-in is a device agent that is simply not there (a closed port).

Covered elsewhere: the driver killed mid-search and restarted
(tests/platform/test_search_resume.py), the MLflow server away during a search and a trial
worker killed (tests/ops/test_mlflow_server.py)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from adacomp.device_farm import Farm, FarmConfig, MeasurementStore, MeasureSettings
from adacomp.device_farm.config import AgentSpec, HostSpec
from adacomp.device_farm.devices.agent import AgentDevice
from adacomp.device_farm.devices.host import HostDevice
from adacomp.platform.cli.main import main
from tests.helpers.tiny_onnx import tiny_model
from tests.loopback import free_port

REPO = Path(__file__).resolve().parents[2]
QUICK = MeasureSettings(warmup_runs=1, min_runs=5, max_runs=20, max_cv=10)


def test_a_device_agent_that_is_down_is_quarantined_and_its_class_answers(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    config = FarmConfig(
        devices=(
            AgentSpec(name="board", kind="agent", device_class="pi", url=url, token_file=tmp_path / "t"),
            HostSpec(name="spare", kind="host", device_class="pi"),
        ),
        quarantine_s=120,
    )
    devices = [AgentDevice("board", "pi", url=url, token="x", timeout_s=5), HostDevice("spare", "pi")]
    store = MeasurementStore(tmp_path / "store")
    farm = Farm(config, store=store, devices=devices)
    measurement = farm.measure(tiny_model(), "board", QUICK)
    assert measurement.device == "spare"  # retried elsewhere, and says where it was measured
    assert farm.quarantined_for("board") > 100
    failed = [r for r in store.rows() if r["status"] == "failed"]
    assert {r["device"] for r in failed} == {"board"} and len(failed) == 2  # tried, retried: recorded


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (lambda text: text[: len(text) // 3] + "\n  - {metric: [", "not valid YAML"),  # truncated mid-list
        (lambda text: "", "expected a mapping"),
        (lambda text: "\x00\x01binary\xff garbage", "digits.yaml"),
        (lambda text: text.replace("trials: 40", "trials: forty"), "trials"),
        (
            lambda text: text.replace("targets: [", "tragets: ["),
            "tragets: unknown field; did you mean 'targets'?",
        ),
    ],
)
def test_a_corrupt_config_is_one_clear_line_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corrupt: object, expected: str
) -> None:
    text = (REPO / "examples" / "digits.yaml").read_text()
    path = tmp_path / "digits.yaml"
    path.write_text(corrupt(text))  # type: ignore[operator]
    monkeypatch.chdir(tmp_path)
    for command in (["search", str(path)], ["nightly", str(path)], ["supernet", "train", str(path)]):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            code = main(command)
        message = stderr.getvalue().strip()
        assert code == 2 and message.count("\n") == 0, message
        assert "digits.yaml" in message and expected in message, message
    assert not (tmp_path / "runs").exists()  # nothing started, nothing written
