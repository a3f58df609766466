"""The remote agent as a real process on loopback, driven by the real client and raw HTTP."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from adacomp.device_farm import DeviceError, Farm, FarmConfig, OnnxModel
from adacomp.device_farm.config import AgentSpec
from adacomp.device_farm.devices.agent import AgentDevice
from tests.helpers.agent_process import QUICK, TOKEN, Agent


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    running = Agent(tmp_path, "--max-model-mb", "1")
    yield running
    running.stop()


def _post(
    url: str, body: bytes, token: str = TOKEN, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Authorization": f"Bearer {token}", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_measure_over_loopback(agent: Agent, onnx_model: OnnxModel) -> None:
    device = AgentDevice("pi", "rpi4", url=agent.url, token_file=agent.token_file)
    assert device.health().ok
    m = device.measure(onnx_model, QUICK)
    assert m.device == "pi" and m.device_class == "rpi4" and m.source == "measured"
    assert m.model_hash == onnx_model.sha256 and m.latency.runs >= 5


def test_wrong_token_is_401(agent: Agent, onnx_model: OnnxModel) -> None:
    status, body = _post(agent.url + "/measure", onnx_model.data, token="wrong-token-wrong-token")
    assert status == 401 and body["error"] == "missing or wrong token"
    device = AgentDevice("pi", "rpi4", url=agent.url, token="nope-nope-nope-nope")
    with pytest.raises(DeviceError, match="401: missing or wrong token"):
        device.measure(onnx_model, QUICK)
    assert not device.health().ok


def test_oversized_upload_is_413(agent: Agent) -> None:
    status, body = _post(agent.url + "/measure", b"\x00" * (2 * 1024 * 1024))
    assert status == 413 and "at most 1048576" in str(body["error"])


def test_non_onnx_upload_is_415(agent: Agent) -> None:
    status, body = _post(agent.url + "/measure", b"import os; os.system('rm -rf /')")
    assert status == 415 and "not an ONNX model" in str(body["error"])


def test_bad_settings_are_400(agent: Agent, onnx_model: OnnxModel) -> None:
    status, body = _post(
        agent.url + "/measure", onnx_model.data, headers={"X-Adacomp-Settings": '{"min_runs": -3}'}
    )
    assert status == 400 and "min_runs" in str(body["error"])


def test_second_request_while_busy_is_503(agent: Agent, onnx_model: OnnxModel) -> None:
    slow = QUICK.model_copy(update={"min_runs": 100_000, "max_runs": 100_000, "max_seconds": 3})
    results: list[int] = []
    first = threading.Thread(
        target=lambda: results.append(
            _post(
                agent.url + "/measure",
                onnx_model.data,
                headers={"X-Adacomp-Settings": slow.model_dump_json()},
            )[0]
        )
    )
    first.start()
    device = AgentDevice("pi", "rpi4", url=agent.url, token=TOKEN)
    deadline = time.monotonic() + 10
    while "busy" not in device.health().detail and time.monotonic() < deadline:
        time.sleep(0.02)
    status, body = _post(agent.url + "/measure", onnx_model.data)
    first.join()
    assert status == 503 and "one measurement at a time" in str(body["error"])
    assert results == [200]


def test_agent_killed_mid_measurement_releases_the_lease(
    tmp_path: Path, agent: Agent, onnx_model: OnnxModel
) -> None:
    config = FarmConfig(
        devices=(
            AgentSpec(
                name="pi", kind="agent", device_class="rpi4", url=agent.url, token_file=agent.token_file
            ),
        ),
        quarantine_s=30,
    )
    farm = Farm(config)
    slow = QUICK.model_copy(update={"min_runs": 100_000, "max_runs": 100_000, "max_seconds": 30})
    threading.Timer(1.0, lambda: os.kill(agent.process.pid, signal.SIGKILL)).start()
    started = time.monotonic()
    with pytest.raises(DeviceError, match="pi"):
        farm.measure(onnx_model, "pi", slow)
    assert time.monotonic() - started < 20
    assert not farm._leases["pi"].held
    assert farm.quarantined_for("pi") > 0
    status = {s.name: s for s in farm.status()}["pi"]
    assert not status.healthy and "unreachable" in status.detail
