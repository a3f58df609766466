"""cluster.yaml is checked the way `ray up` checks it: Ray's own default fill-out, then Ray's schema.

`ray up` runs `commands._bootstrap_config`, which is `util.prepare_config` (the local provider's
single node type, the provider defaults.yaml, merged setup commands), the provider's resource
fill-out, then `util.validate_config` (ray-schema.json plus a few cross-field checks). The local
variant goes through that very function; the commented cloud variant through prepare_config and
validate_config only, since the AWS provider's hooks would call AWS.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.commands import _bootstrap_config
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"
BEGIN_CLOUD = "# ---- BEGIN cloud variant"
END_CLOUD = "# ---- END cloud variant"
RESOURCES_FROM_FILE = "--resources=\"$(cat ~/.adacomp/node-resources.json 2>/dev/null || echo '{}')\""


def load_local() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(CLUSTER_YAML.read_text())
    return config


def uncommented_cloud_variant() -> dict[str, Any]:
    """The block between the markers with one leading '#' (and the space after it) removed."""
    lines = CLUSTER_YAML.read_text().splitlines()
    begin = next(i for i, line in enumerate(lines) if line.startswith(BEGIN_CLOUD))
    end = next(i for i, line in enumerate(lines) if line.startswith(END_CLOUD))
    block = lines[begin + 1 : end]
    assert all(line.startswith("#") for line in block), "the cloud variant must be comments only"
    config: dict[str, Any] = yaml.safe_load("\n".join(re.sub(r"^# ?", "", line) for line in block))
    return config


def launcher_view(config: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` validates and then acts on; raises as `ray up` would on a bad config."""
    bootstrapped: dict[str, Any] = _bootstrap_config(copy.deepcopy(config), no_config_cache=True)
    return bootstrapped


def test_cluster_yaml_is_valid_for_the_ray_launcher() -> None:
    """A config the launcher rejects is only found out when someone runs `ray up` on real hosts."""
    config = launcher_view(load_local())
    assert config["cluster_name"] == "adacomp"
    validate_config(config)  # idempotent: the bootstrapped config is itself valid


def test_cluster_yaml_uses_the_local_provider_with_head_and_worker_ips() -> None:
    """Phones and boards hang off our own machines, so the cluster is the on-prem one."""
    provider = load_local()["provider"]
    assert provider["type"] == "local"
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", provider["head_ip"])
    assert provider["worker_ips"]
    assert provider["head_ip"] not in provider["worker_ips"]
    config = launcher_view(load_local())
    assert config["max_workers"] <= len(provider["worker_ips"])


def test_every_node_installs_adacomp_from_the_shipped_checkout() -> None:
    """Trials and device actors import adacomp on every node, from the code `ray up` synced."""
    local = load_local()
    remote_checkout = next(remote for remote, source in local["file_mounts"].items() if source == ".")
    config = launcher_view(local)
    for commands in (config["head_setup_commands"], config["worker_setup_commands"]):
        assert any(f"pip install --quiet -e {remote_checkout}" in command for command in commands)
        assert any("download.pytorch.org/whl/cpu" in command for command in commands)


def test_nodes_offer_device_resources_from_their_own_file() -> None:
    """A device actor asks for device:<name>; only the host the device is plugged into may offer it."""
    config = launcher_view(load_local())
    worker_start = " ".join(config["worker_start_ray_commands"])
    assert "ray start --address=$RAY_HEAD_IP:6379" in worker_start
    assert RESOURCES_FROM_FILE in worker_start


def test_the_head_exposes_the_job_server_to_the_network() -> None:
    """`adacomp submit --address http://HEAD:8265` goes through the dashboard's job server."""
    head_start = " ".join(launcher_view(load_local())["head_start_ray_commands"])
    assert "ray start --head" in head_start
    assert "--dashboard-host=0.0.0.0" in head_start
    assert "--port=6379" in head_start
    port = re.search(r"--dashboard-port=(\d+)", head_start)
    assert port is None or port.group(1) == "8265"


def test_start_commands_are_valid_shell() -> None:
    """The launcher hands each command to bash; a quoting slip in --resources would only show on a node."""
    config = load_local()
    for command in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        result = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True, timeout=10)
        assert result.returncode == 0, result.stderr


def test_the_commented_cloud_variant_is_valid_too() -> None:
    """Commented-out config rots silently unless something parses it."""
    cloud = uncommented_cloud_variant()
    assert cloud["provider"]["type"] == "aws"
    config = prepare_config(cloud)
    validate_config(config)
    assert config["head_node_type"] in config["available_node_types"]
    for node_type in config["available_node_types"].values():
        assert not any(name.startswith("device:") for name in node_type["resources"])
    assert "--dashboard-host=0.0.0.0" in " ".join(config["head_start_ray_commands"])


def test_validation_rejects_a_misspelt_key() -> None:
    """Shows the checks above can fail: the schema forbids unknown top-level keys."""
    config = load_local()
    config["idle_timout_minutes"] = config.pop("idle_timeout_minutes")
    with pytest.raises(jsonschema.ValidationError, match="idle_timout_minutes"):
        launcher_view(config)
