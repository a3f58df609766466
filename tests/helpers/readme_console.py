"""The README's ```console``` lines, read by test_mlflow_server.py and test_readme_ops.py."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def readme_console_lines() -> list[str]:
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```console\n(.*?)```", readme, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]
