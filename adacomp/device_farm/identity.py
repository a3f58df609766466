"""Which machine a measurement was taken on: CPU model, the ISA extensions that change kernels,
core count, runtime.

"The host" is not one CPU. On machines of this project's very kind, int8 QDQ MobileNetV2 ran
0.70x of fp32 on one (AVX2, no VNNI) and 1.33x on another (AVX-512 VNNI): the same model hash,
device name and settings are two different measurements. So every measurement carries the
identity of what measured it, the store keys rows by it (two identities never share a row), a
calibrated profile records the one it was fitted on, and `farm list` and MLflow show it.

Only the flags that select different ONNX Runtime (MLAS) or XNNPACK kernels are kept, so a
kernel-irrelevant difference (a microcode flag, a VM's hypervisor bits) does not split the store.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

# x86: vector widths, FMA, and the int8 / bf16 dot-product and matrix units MLAS dispatches on.
# ARM (the `Features` line): NEON, fp16 arithmetic, int8 dot products and matrix multiply, SVE.
KERNEL_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimdhp",
    "fphp",
    "asimddp",
    "i8mm",
    "bf16",
    "sve",
    "sve2",
)


@dataclass(frozen=True)
class DeviceIdentity:
    cpu: str  # the CPU model as the OS names it
    arch: str  # x86_64, aarch64, ...
    flags: tuple[str, ...]  # of KERNEL_FLAGS, in that order
    cores: int
    runtime: str  # e.g. "onnxruntime 1.32.0"

    def describe(self) -> str:
        """One line, and the key the store and profiles compare: equal lines, same kernels."""
        flags = " ".join(self.flags) or "no listed vector extensions"
        return f"{self.cpu}; {self.arch}; {flags}; {self.cores} cores; {self.runtime}"


def cpu_facts(cpuinfo: str) -> tuple[str, tuple[str, ...]]:
    """The CPU model and its kernel-relevant flags from the text of /proc/cpuinfo (x86 `model
    name` and `flags`; ARM `Features`, and `Hardware` or `CPU part` where no model name is given)."""
    model, flags, part = "", set[str](), ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "model name" and not model:
            model = value
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
        elif key in ("hardware", "cpu part") and not part:
            part = f"{key} {value}"
    return model or part or "unknown CPU", tuple(f for f in KERNEL_FLAGS if f in flags)


@functools.cache
def host_identity() -> DeviceIdentity:
    """This machine's identity (read once per process)."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:  # not Linux: the platform's own name, no flags
        cpuinfo = f"model name: {platform.processor() or platform.machine()}"
    model, flags = cpu_facts(cpuinfo)
    return DeviceIdentity(model, platform.machine(), flags, os.cpu_count() or 1, _onnxruntime())


def _onnxruntime() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"


def differs(recorded: str | None, current: str | None) -> bool:
    """Whether two identities are known and not the same machine."""
    return bool(recorded) and bool(current) and recorded != current
