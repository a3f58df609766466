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


def write_report(path: Path, report: dict[str, Any]) -> None:
    """`report` plus the machine, as indented JSON at `path` (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **report}, indent=2))
    print(f"wrote {path}")
