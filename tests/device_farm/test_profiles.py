"""Device profiles: every built-in loads and names its sources; bad files say which file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from adacomp.device_farm.graph import OpKind
from adacomp.device_farm.profiles import (
    PROFILE_DIR,
    DeviceProfile,
    builtin_profile_names,
    load_profile,
    save_profile,
)
from adacomp.errors import AdacompError

REAL_DEVICES = (
    "snapdragon8gen2",
    "snapdragon450",
    "raspberrypi4",
    "jetson_nano",
    "snapdragon_wear4100",
    "pixel4",
)


def test_the_promised_profiles_ship() -> None:
    names = builtin_profile_names()
    assert set(REAL_DEVICES) | {"host"} <= set(names)


@pytest.mark.parametrize("name", builtin_profile_names())
def test_builtin_profile_loads_and_cites_sources(name: str) -> None:
    profile = load_profile(name)
    assert profile.name == name
    assert profile.has_kernels("fp32")
    assert any(source.startswith("https://") for source in profile.sources)
    # The derivation is explained in the file itself, not only in the sources list.
    text = (PROFILE_DIR / f"{name}.yaml").read_text()
    assert text.lstrip().startswith("#") and "GMAC/s" in text
    for precision in profile.throughput_gmacs:
        for kind in (OpKind.CONV, OpKind.DEPTHWISE_CONV, OpKind.GEMM):
            assert profile.gmacs(precision, kind) > 0
    # Depthwise convs never beat dense ones per MAC on a CPU.
    assert profile.gmacs("fp32", OpKind.DEPTHWISE_CONV) < profile.gmacs("fp32", OpKind.CONV)


def test_kernels_follow_the_instruction_sets() -> None:
    # Armv8.2+ cores (A76, X3) have FP16 arithmetic; Armv8.0 cores (A53, A57, A72) do not.
    for name in ("pixel4", "snapdragon8gen2"):
        assert load_profile(name).has_kernels("fp16")
    for name in ("snapdragon450", "raspberrypi4", "jetson_nano", "snapdragon_wear4100", "host"):
        assert not load_profile(name).has_kernels("fp16")
    assert all(load_profile(name).has_kernels("int8") for name in REAL_DEVICES)


def test_load_by_path_and_round_trip(tmp_path: Path) -> None:
    profile = load_profile("pixel4").model_copy(update={"efficiency": {OpKind.CONV: 0.8}, "name": "mine"})
    path = save_profile(profile, tmp_path / "deep" / "mine.yaml")
    assert load_profile(path) == profile
    assert load_profile(str(path)) == profile
    assert yaml.safe_load(path.read_text())["efficiency"] == {"conv": 0.8}


def test_profiles_are_frozen() -> None:
    profile = load_profile("host")
    with pytest.raises(ValidationError):
        profile.cores = 2


def _write(tmp_path: Path, **changes: object) -> Path:
    data = yaml.safe_load((PROFILE_DIR / "pixel4.yaml").read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"bandwidth_gbs": None}, "bandwidth_gbs"),
        ({"bandwidth_gbs": -1}, "bandwidth_gbs"),
        ({"cores": "many"}, "cores"),
        ({"sources": []}, "sources"),
        ({"turbo": True}, "turbo"),
        ({"throughput_gmacs": {"int8": {"conv": 1, "depthwise_conv": 1, "gemm": 1}}}, "throughput_gmacs"),
        ({"throughput_gmacs": {"fp32": {"conv": 1, "gemm": 1}}}, "throughput_gmacs"),
        ({"throughput_gmacs": {"fp64": {"conv": 1, "depthwise_conv": 1, "gemm": 1}}}, "throughput_gmacs"),
        ({"efficiency": {"conv": 0}}, "efficiency"),
        ({"efficiency": {"convolution": 1.0}}, "efficiency"),
        ({"kernel_graph": "fastest"}, "kernel_graph"),
        ({"kernel_model": "nowhere.kernels.json"}, "kernel_model"),
        ({"published": [{"source": "x", "model": "m", "precision": "fp64"}]}, "published"),
        (
            {
                "published": [
                    {
                        "source": "x",
                        "model": "m",
                        "precision": "fp32",
                        "runtime": "r",
                        "threads": 1,
                        "published_ms": -3,
                        "predicted_ms": 1,
                    }
                ]
            },
            "published",
        ),
        ({"calibration": {"held_out_within_10": [1, 2]}}, "calibration"),
    ],
)
def test_bad_profile_names_file_and_field(tmp_path: Path, changes: dict[str, object], field: str) -> None:
    path = _write(tmp_path, **changes)
    with pytest.raises(AdacompError) as error:
        load_profile(path)
    message = str(error.value)
    assert "broken.yaml" in message and field in message
    assert "\n" not in message


def test_unreadable_profiles(tmp_path: Path) -> None:
    with pytest.raises(AdacompError, match=r"unknown device profile 'pixel9'.*pixel4"):
        load_profile("pixel9")
    with pytest.raises(AdacompError, match="does not exist"):
        load_profile(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(AdacompError, match=r"bad\.yaml.*not valid YAML"):
        load_profile(bad)
    bad.write_text("- a list\n")
    with pytest.raises(AdacompError, match="mapping"):
        load_profile(bad)


def test_unsafe_yaml_is_not_executed(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(AdacompError, match="not valid YAML"):
        load_profile(path)


def test_thread_model() -> None:
    profile = DeviceProfile.model_validate(
        {**load_profile("raspberrypi4").model_dump(), "cores": 4, "parallel_efficiency": 0.5}
    )
    assert profile.thread_speedup(1) == 1.0
    assert profile.thread_speedup(3) == 2.0
    assert profile.thread_speedup(16) == profile.thread_speedup(4) == 2.5
    assert profile.power_w(2) == profile.active_power_w + profile.extra_core_power_w
