"""README stays honest: its make targets exist and its `adacomp` commands run as written."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _commands(prefix: str) -> list[str]:
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    lines = [line.split("#", 1)[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith(prefix)]


def test_quickstart_is_exactly_two_make_targets_that_exist() -> None:
    readme = (REPO / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quickstart.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    for command in commands:
        dry = subprocess.run([*shlex.split(command), "-n"], cwd=REPO, capture_output=True, text=True)
        assert dry.returncode == 0, dry.stderr


def test_demo_target_runs_an_adacomp_command_from_the_readme_flow() -> None:
    makefile = (REPO / "Makefile").read_text()
    demo = re.search(r"^demo:.*\n\t(.+)$", makefile, flags=re.M)
    assert demo is not None
    assert "adacomp compress" in demo.group(1)


@pytest.mark.slow
def test_readme_adacomp_commands_run(tmp_path: Path) -> None:
    """Runs every `adacomp ...` line of the README in order, in a scratch directory."""
    env = {**os.environ, "ADACOMP_CACHE": str(tmp_path / "cache")}
    executable = shutil.which("adacomp") or f"{sys.executable} -m adacomp"
    commands = _commands("adacomp ")
    assert commands
    for command in commands:
        argv = [*shlex.split(executable), *shlex.split(command)[1:]]
        result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{command}\n{result.stderr[-2000:]}"


@pytest.mark.slow
def test_demo_command_runs(tmp_path: Path) -> None:
    """The exact command `make demo` runs, against this checkout's example plan."""
    makefile = (REPO / "Makefile").read_text()
    line = re.search(r"^demo:.*\n\t(.+)$", makefile, flags=re.M)
    assert line is not None
    argv = shlex.split(
        line.group(1).replace("$(BIN)/adacomp", "adacomp").replace("$(DEMO_OUT)", str(tmp_path / "demo"))
    )
    env = {**os.environ, "ADACOMP_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-m", "adacomp", *argv[1:]],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "storage (encoded)" in result.stdout
    assert (tmp_path / "demo" / "model.onnx").is_file()
