"""Real Ray on this machine: device actors pinned by resource, and the host core reservation."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from adacomp.device_farm.cores import available_cores, reserve_cores
from adacomp.errors import AdacompError

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json, os, ray, torch
    from adacomp.device_farm import FarmConfig, MeasureSettings, OnnxModel
    from adacomp.device_farm.config import HostSpec
    from adacomp.platform.ray_farm import RayFarm, init_local_ray
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
