"""A fake adb and phone (`Phone`) and the AdbDevices over it: for test_adb and test_device_contract."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

from adacomp.device_farm.devices.adb import AdbDevice, FuelGauge
from tests.helpers.perf_test_samples import SME2_RUNS_S, load_sample, result_file

SERIAL = "FAKE0123"

FAKE_ADB = r'''#!{python}
"""Stands in for adb and a phone in tests (no phone is attached)."""
import json, os, shutil, sys
from pathlib import Path

here = Path(__file__).parent
phone = json.loads((here / "phone.json").read_text())
args = sys.argv[1:]
with open(here / "adb.log", "a") as log:
    log.write(json.dumps(args) + "\n")
serial = None
if args[:1] == ["-s"]:
    serial, args = args[1], args[2:]
if serial is not None and serial != phone["serial"]:
    sys.exit(f"adb: device '{{serial}}' not found")
errors = {{
    "unauthorized": "error: device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set\n"
    "Try 'adb kill-server' if that seems wrong.\nOtherwise check for a confirmation dialog on your device.",
    "offline": "error: device offline",
}}
if phone["state"] != "device":
    sys.exit(errors[phone["state"]])
if args == ["get-state"]:
    print("device")
elif args[0] == "push":
    shutil.copyfile(args[1], args[2])
    print(f"{{args[1]}}: 1 file pushed, 0 skipped.")
elif args[0] == "shell":
    command = " ".join(args[1:])
    if command.startswith("dumpsys battery"):
        sys.exit(0)
    os.execvp(phone["shell"], [phone["shell"], "-c", command])
else:
    sys.exit(f"adb: unknown command {{args[0]}}")
'''


class Phone:
    """The fake phone's files and what adb was asked to do."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True)
        self.adb = root / "adb"
        self.adb.write_text(FAKE_ADB.format(python=sys.executable))
        self.adb.chmod(0o755)
        self.log = root / "adb.log"
        self.remote_dir = root / "data local tmp" / "adacomp"  # a space, so quoting is exercised
        self.gauge = root / "battery"
        self.gauge.mkdir()
        self.set_state("device")
        self.set_battery(current_ua=-200_000, voltage_uv=4_000_000, status="Discharging")

    def set_state(self, state: str, shell: str = "sh") -> None:
        (self.root / "phone.json").write_text(json.dumps({"serial": SERIAL, "state": state, "shell": shell}))

    def set_battery(self, current_ua: int, voltage_uv: int, status: str) -> None:
        (self.gauge / "current_now").write_text(f"{current_ua}\n")
        (self.gauge / "voltage_now").write_text(f"{voltage_uv}\n")
        (self.gauge / "status").write_text(f"{status}\n")

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def shell_commands(self) -> list[str]:
        return [call[-1] for call in self.calls() if "shell" in call]

    def benchmark(
        self,
        sample: str = "perf_test_android_sme2.txt",
        *,
        busy_ua: int | None = -700_000,
        seconds: float = 0.7,
        exit_code: int = 0,
        stderr: str = "",
        per_run_s: list[float] | None = SME2_RUNS_S,
    ) -> Path:
        """A stand-in for onnxruntime_perf_test: prints a real output, optionally loads the battery."""
        output = self.root / f"{sample}.out"
        output.write_text(load_sample(sample))
        lines = ["#!/bin/sh", 'for a; do last="$a"; done']
        if busy_ua is not None:
            lines.append(f"echo {busy_ua} > {shlex.quote(str(self.gauge / 'current_now'))}")
        lines.append(f"sleep {seconds}")
        if per_run_s is not None:
            lines.append(f'printf %s {shlex.quote(result_file(per_run_s))} > "$last"')
        lines.append(f"cat {shlex.quote(str(output))}")
        if stderr:
            lines.append(f"printf '%s\\n' {shlex.quote(stderr)} >&2")
        lines.append(f"exit {exit_code}")
        binary = self.root / "onnxruntime_perf_test"
        binary.write_text("\n".join(lines) + "\n")
        binary.chmod(0o755)
        return binary

    def device(self, binary: Path, **options: Any) -> AdbDevice:
        options.setdefault("energy", FuelGauge(path=str(self.gauge), interval_s=0.1, idle_s=0.2))
        return AdbDevice(
            "phone",
            "pixel",
            serial=SERIAL,
            benchmark_binary=binary,
            adb=str(self.adb),
            remote_dir=str(self.remote_dir),
            **options,
        )


def working_adb_device(tmp: Path) -> AdbDevice:
    """For the device contract (test_device_contract.py): a healthy fake phone."""
    phone = Phone(tmp / "contract-phone")
    return phone.device(phone.benchmark(seconds=0.1), energy=False)


def broken_adb_device(tmp: Path) -> AdbDevice:
    """For the device contract: perf_test crashes on the fake phone."""
    phone = Phone(tmp / "contract-broken-phone")
    crashing = phone.benchmark(seconds=0, exit_code=139, stderr="Segmentation fault", per_run_s=None)
    return phone.device(crashing, energy=False)
