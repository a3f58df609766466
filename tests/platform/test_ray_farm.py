"""Real Ray on this machine: device actors pinned by resource, and the host core reservation."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from adacomp.device_farm.cores import available_cores, reserve_cores
from adacomp.errors import AdacompError
from tests.loopback import free_port, own_ray_head_ports

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

SCRIPT = textwrap.dedent(
    """
    import json, os, ray, torch
    from adacomp.device_farm import FarmConfig, MeasureSettings, OnnxModel
    from adacomp.device_farm.config import HostSpec
    from adacomp.platform.search.ray_farm import RayFarm, init_local_ray
    from adacomp.search_spaces import export_onnx

    model = OnnxModel(export_onnx(torch.nn.Sequential(torch.nn.Linear(8, 4)).eval(), torch.randn(2, 8)))
    config = FarmConfig(devices=(HostSpec(name="host", kind="host"),))
    reservation = init_local_ray(config, include_dashboard=False, log_to_driver=False)

    @ray.remote(num_cpus=1)
    def trial_affinity():
        return sorted(os.sched_getaffinity(0))

    farm = RayFarm(config, reservation)
    m = farm.measure(model, "host", MeasureSettings(warmup_runs=1, min_runs=5, max_runs=20, max_cv=10))
    print(json.dumps({
        "training": list(reservation.training),
        "measurement": list(reservation.measurement),
        "trial": ray.get(trial_affinity.remote()),
        "actor": ray.get(farm.actors["host"].affinity.remote()),
        "notes": m.notes,
        "resources": ray.cluster_resources().get("device:host"),
    }))
    ray.shutdown()
    """
)


def test_reserve_cores_splits_and_refuses_too_few() -> None:
    reservation = reserve_cores([0, 1, 2, 3], 1)
    assert reservation.measurement == (3,) and reservation.training == (0, 1, 2)
    with pytest.raises(AdacompError, match="training needs at least one"):
        reserve_cores([0], 1)


@pytest.mark.slow
@pytest.mark.skipif(len(available_cores()) < 2, reason="needs two cores to split")
def test_host_measurements_never_share_cores_with_trials() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["resources"] == 1.0  # the device's custom resource exists and the actor holds it
    assert set(data["trial"]) <= set(data["training"])
    assert data["actor"] == data["measurement"]
    assert f"cores {data['measurement']}" in data["notes"]
    assert not set(data["trial"]) & set(data["measurement"])


OWN_CLUSTER = textwrap.dedent(
    """
    import json, ray
    from adacomp.device_farm import FarmConfig
    from adacomp.device_farm.config import HostSpec
    from adacomp.platform.search.ray_farm import init_local_ray

    config = FarmConfig(devices=(HostSpec(name="host", kind="host"),))
    init_local_ray(config, measurement_cores=0, include_dashboard=False, log_to_driver=False)
    print(json.dumps({"gcs": ray.get_runtime_context().gcs_address, "cpus": ray.cluster_resources()["CPU"]}))
    ray.shutdown()
    """
)


@pytest.mark.slow
def test_a_local_ray_is_its_own_beside_a_cluster_a_user_started_here() -> None:
    """A bare `ray.init` joins the last cluster `ray start` left on this machine (and then refuses
    `num_cpus`). RAY_TMPDIR gives this head and the check their own temp dir, so the rest of the
    machine (other tests, other searches) sees neither."""
    temp = Path("/tmp") / f"adacomp-rt-{os.getpid()}"  # short: Ray's socket paths must fit
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": str(temp)}
    port = free_port()
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats", *own_ray_head_ports()],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (temp / "ray" / "ray_current_cluster").exists():
            if time.monotonic() > deadline or head.poll() is not None:
                pytest.fail("ray start --head never wrote its address")
            time.sleep(0.5)
        result = subprocess.run(
            [sys.executable, "-c", OWN_CLUSTER],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        data = json.loads(result.stdout.strip().splitlines()[-1])
        assert not data["gcs"].endswith(f":{port}")  # not the user's head
        assert data["cpus"] == len(available_cores())  # every core of this machine, as asked
    finally:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)
