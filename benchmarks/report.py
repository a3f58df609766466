"""What every benchmark's JSON report carries about the machine, and how it is written."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any


def machine() -> dict[str, str]:
    """The facts a reader needs to compare two reports: interpreter, OS, CPU, library versions."""
    import onnxruntime
    import torch

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor(),
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
    }


# The instruction sets that decide which kernels onnxruntime and torch run (int8 above all).
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
             "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm", "sve")  # fmt: skip


def cpu() -> dict[str, Any]:
    """The CPU's model, core count and ISA flags: host ratios from different CPUs are not
    comparable (int8 MobileNetV2 ran 0.70x of fp32 on an AVX2-only machine, 1.33x with VNNI)."""
    import os

    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model") and value.strip():
                model = value.strip()
            elif key.strip() in ("flags", "Features"):
                flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(), "isa": [f for f in ISA_FLAGS if f in flags]}


def write_report(path: Path, report: dict[str, Any]) -> None:
    """`report` plus the machine and its CPU, as indented JSON at `path` (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), "cpu": cpu(), **report}, indent=2))
    print(f"wrote {path}")


def save_figure(figure: Any, axes: Any, labels: tuple[str, str], title: str, path: Path) -> None:
    """Axis labels, title, grid and legend on a matplotlib figure, written as a PNG at `path`."""
    import matplotlib.pyplot as plt

    axes.set_xlabel(labels[0])
    axes.set_ylabel(labels[1])
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
