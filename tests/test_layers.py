"""The layering check that `make test` runs (import-linter, contracts in pyproject.toml) holds on
the tree, and fails when a forbidden import is added: each case runs `lint-imports` over a copy
of the package with one line added, so the contracts are shown to bite, not just to pass."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "adacomp", tmp_path / "adacomp", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    # Run in the copy: import-linter puts the working directory first on the import path.
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True, text=True, timeout=120
    )


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    done = _lint(_copy(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # A lower layer of the platform reaching up (results -> search).
        (
            "platform/results/front.py",
            "from adacomp.platform.search.job import search",
            "adacomp.platform.results is not allowed to import adacomp.platform.search",
        ),
        # A lazy import counts too: evaluate -> cli inside a function.
        (
            "platform/evaluate/trial.py",
            "def _late() -> None:\n    from adacomp.platform.cli.main import main",
            "adacomp.platform.evaluate is not allowed to import adacomp.platform.cli",
        ),
        # A library package pointing back into the platform.
        (
            "search_spaces/plan.py",
            "import adacomp.platform.search_config",
            "adacomp.search_spaces is not allowed to import adacomp.platform",
        ),
        # The device runtime pulling in torch.
        ("runtime/selector.py", "import torch", "adacomp.runtime is not allowed to import torch"),
        # Two modules of one folder importing each other.
        (
            "platform/supernet_training/options.py",
            "from adacomp.platform.supernet_training import training",
            "No cycles are allowed in adacomp.platform.supernet_training",
        ),
    ],
)
def test_a_forbidden_import_breaks_the_check(tmp_path: Path, module: str, line: str, broken: str) -> None:
    tree = _copy(tmp_path)
    target = tree / "adacomp" / module
    assert target.exists(), target
    target.write_text(target.read_text() + "\n\n" + line + "  # noqa\n")
    done = _lint(tree)
    assert done.returncode != 0
    assert broken in done.stdout, done.stdout
