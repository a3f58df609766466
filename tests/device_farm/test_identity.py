"""A device knows what it is (issue 38, part 4): the CPU, the ISA flags that change kernels, its
cores and runtime. The store never serves one machine's numbers as another's, a profile fitted
on another CPU says so, and `farm list` shows it. Real host, real agent on loopback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from adacomp.device_farm import Farm, FarmConfig, MeasurementStore, MeasureSettings, OnnxModel
from adacomp.device_farm.devices.agent import AgentDevice
from adacomp.device_farm.devices.emulated import EmulatedDevice, warn_if_fitted_elsewhere
from adacomp.device_farm.devices.host import HostDevice
from adacomp.device_farm.identity import DeviceIdentity, cpu_facts, differs, host_identity
from adacomp.device_farm.profiles import load_profile
from tests.helpers.agent_process import TOKEN, Agent

QUICK = MeasureSettings(warmup_runs=1, min_runs=5, max_runs=20, max_cv=10)

X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme sse4_2 avx avx2 fma f16c avx512f avx512bw avx512vl avx512_vnni hypervisor amx_int8
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
"""
ARM = """processor\t: 0
BogoMIPS\t: 38.40
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimddp i8mm
CPU part\t: 0xd0b
"""


def test_the_cpu_and_the_flags_that_change_kernels_are_read_from_cpuinfo() -> None:
    assert cpu_facts(X86) == (
        "Intel(R) Xeon(R) Platinum 8480+",
        (
            "sse4_2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512_vnni",
            "amx_int8",
        ),
    )  # the hypervisor bit and the rest change no kernel
    assert cpu_facts(ARM) == ("cpu part 0xd0b", ("asimd", "asimdhp", "fphp", "asimddp", "i8mm"))
    assert cpu_facts("") == ("unknown CPU", ())
    avx2_only = DeviceIdentity("EPYC", "x86_64", ("avx", "avx2"), 2, "onnxruntime 1.32.0")
    vnni = DeviceIdentity("EPYC", "x86_64", ("avx", "avx2", "avx512_vnni"), 2, "onnxruntime 1.32.0")
    assert differs(avx2_only.describe(), vnni.describe())  # same model name, other kernels
    assert not differs(None, vnni.describe()) and not differs(vnni.describe(), vnni.describe())


def test_host_measurements_carry_this_machine(onnx_model: OnnxModel) -> None:
    me = host_identity()
    assert me.cores >= 1 and me.runtime.startswith("onnxruntime ") and me.arch
    measurement = HostDevice().measure(onnx_model, QUICK)
    assert measurement.identity == me.describe() == HostDevice().identity()


def test_two_identities_never_share_a_row(tmp_path: Path, onnx_model: OnnxModel) -> None:
    store = MeasurementStore(tmp_path)
    farm = Farm(FarmConfig(devices=()), store=store, devices=[HostDevice()])
    ours = farm.measure(onnx_model, "host", QUICK)
    other = "AMD EPYC 9R14; x86_64; avx avx2; 2 cores; onnxruntime 1.32.0"
    from dataclasses import replace

    store.add(replace(ours, identity=other, timestamp=ours.timestamp + 1, latency=ours.latency))
    key = QUICK.key()
    assert store.lookup(onnx_model.sha256, "host", key, ours.identity) == ours
    assert store.lookup(onnx_model.sha256, "host", key, other).identity == other  # type: ignore[union-attr]
    assert store.lookup(onnx_model.sha256, "host", key) is None  # an unknown identity is served nothing
    reopened = MeasurementStore(tmp_path)  # read back from the Parquet parts
    assert reopened.lookup(onnx_model.sha256, "host", key, ours.identity) == ours
    assert farm.measure(onnx_model, "host", QUICK) == ours  # this machine's own, from the store


def test_a_part_written_before_identities_is_never_served_as_this_machine(
    tmp_path: Path, onnx_model: OnnxModel
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from adacomp.device_farm.store import SCHEMA

    store = MeasurementStore(tmp_path)
    measured = HostDevice().measure(onnx_model, QUICK)
    store.add(measured)
    old = store.table().drop_columns(["identity"])  # as a store of the round before wrote it
    for part in store.parts():
        part.unlink()
    pq.write_table(old, str(tmp_path / "part-1-old.parquet"))
    reopened = MeasurementStore(tmp_path)
    assert reopened.rows()[0]["identity"] is None and "identity" in SCHEMA.names
    assert reopened.lookup(onnx_model.sha256, "host", QUICK.key(), measured.identity) is None
    assert pa.types.is_string(SCHEMA.field("identity").type)


def test_a_profile_fitted_on_another_cpu_is_warned_about_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    profile = load_profile("host")
    elsewhere = profile.model_copy(
        update={
            "fitted_on": "AMD EPYC 9R14; x86_64; avx avx2; 2 cores; onnxruntime 1.32.0",
            "fitted_on_kind": "host",
        }
    )
    with caplog.at_level(logging.WARNING):
        EmulatedDevice("host-emulated", elsewhere)
    warned = [r.getMessage() for r in caplog.records if "calibrated on another CPU" in r.getMessage()]
    assert len(warned) == 1 and "\n" not in warned[0] and "adacomp farm calibrate --device host" in warned[0]
    here = profile.model_copy(update={"fitted_on": host_identity().describe(), "fitted_on_kind": "host"})
    assert not warn_if_fitted_elsewhere(here)
    phone = profile.model_copy(update={"fitted_on": "a phone's CPU", "fitted_on_kind": "agent"})
    assert not warn_if_fitted_elsewhere(phone)  # a phone's profile is not this host's


def test_an_agent_says_what_it_runs_on(tmp_path: Path, onnx_model: OnnxModel) -> None:
    agent = Agent(tmp_path)
    try:
        device = AgentDevice("pi", "rpi4", url=agent.url, token=TOKEN)
        assert device.identity() == host_identity().describe()  # the agent runs on this machine here
        assert device.measure(onnx_model, QUICK).identity == device.identity()
    finally:
        agent.stop()


def test_farm_list_shows_each_device_identity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from adacomp.platform.cli.main import main

    assert main(["farm", "list"]) == 0
    out = capsys.readouterr().out
    assert "identity" in out.splitlines()[0]
    assert host_identity().cpu in out and "emulated pixel4 (profile " in out
