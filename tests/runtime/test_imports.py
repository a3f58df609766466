"""The runtime ships to devices with numpy and onnxruntime only: importing it loads nothing heavier."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "ray", "pydantic", "mlflow", "matplotlib", "pandas", "onnx", "optuna", "yaml")

PROBE = f"""
import json, sys
import adacomp
before = sorted(m for m in {HEAVY!r} if m in sys.modules)
import adacomp.runtime
from adacomp.runtime import adaptive, manifest, selector, trace
print(json.dumps({{"adacomp": before, "runtime": sorted(m for m in {HEAVY!r} if m in sys.modules),
                  "platform": sorted(m for m in sys.modules if m.startswith("adacomp.platform"))}}))
"""


def test_importing_the_runtime_loads_no_heavy_dependency() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    loaded = json.loads(result.stdout)
    assert loaded == {"adacomp": [], "runtime": [], "platform": []}
