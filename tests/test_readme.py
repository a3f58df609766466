"""README stays honest: its make targets exist and its `adacomp` commands run as written."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import shutil
import subprocess
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


def test_every_make_command_in_the_readme_is_a_target() -> None:
    """`make check` (Development) and the Quickstart's two: each a target make can plan (`-n`)."""
    commands = _commands("make ")
    assert {"make demo", "make test", "make check"} <= set(commands)
    for command in commands:
        dry = subprocess.run([*shlex.split(command), "-n"], cwd=REPO, capture_output=True, text=True)
        assert dry.returncode == 0, f"{command}: {dry.stderr}"


def test_demo_target_is_the_search_command_the_readme_runs() -> None:
    """`make demo` runs exactly the README's search command, which the test below executes."""
    makefile = (REPO / "Makefile").read_text()
    demo = re.search(r"^demo:.*\n(?:#.*\n)*\t(.+)$", makefile, flags=re.M)
    assert demo is not None
    command = demo.group(1).replace("$(BIN)/adacomp", "adacomp")
    assert command == "adacomp search examples/digits_supernet.yaml --resume"
    assert command in _commands("adacomp ")


def _scratch_examples(tmp_path: Path, trials: int) -> None:
    """The repo's examples, with a smaller trial budget: the same commands, minutes less. The
    digits examples' fine-tune of 5 epochs (85 steps a trial, 255 distilled steps each polished
    plan of both searches) becomes 1 epoch: every trial still fine-tuned and every front polished,
    on a fifth of the training."""
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    for config in (tmp_path / "examples").glob("*.yaml"):
        text = re.sub(r"^trials: \d+", f"trials: {trials}", config.read_text(), flags=re.M)
        text = re.sub(r"^finetune: \{epochs: \d+", "finetune: {epochs: 1", text, flags=re.M)
        text = re.sub(r"^  steps: \d+", "  steps: 10", text, flags=re.M)  # supernet training
        text = re.sub(r"^  trials: \d+", "  trials: 3", text, flags=re.M)  # supernet search
        config.write_text(text)


@pytest.mark.slow
@pytest.mark.usefixtures("shared_ray")
def test_readme_adacomp_commands_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs every `adacomp ...` line of the README in order, in a scratch directory holding a
    copy of examples/ (search budgets cut to 3 trials of 1 epoch). In this process, through the console
    script's own entry point (`adacomp.platform.cli.main.main`): a fresh interpreter per command
    would add its start-up 15 times; tests/platform/test_cli.py runs the real executable. The
    searches join the suite's shared Ray and load baselines from its shared cache (conftest)."""
    from adacomp.platform.cli.main import main

    _scratch_examples(tmp_path, trials=3)
    monkeypatch.chdir(tmp_path)
    commands = _commands("adacomp ")
    assert commands
    outputs, logs = {}, {}
    for command in commands:
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(shlex.split(command)[1:])
        assert code == 0, f"{command}\n{stderr.getvalue()[-2000:]}"
        outputs[command] = stdout.getvalue()
        logs[command] = stderr.getvalue()
    search = outputs["adacomp search examples/digits.yaml --resume"]
    assert "on the Pareto front" in search and "baseline" in search and "adacomp ui --store" in search
    assert "3/3 trials finished" in outputs["adacomp pareto runs/digits"]
    assert "supernet trained: 10 steps" in outputs["adacomp supernet train examples/digits.yaml"]
    assert "3 configurations" in outputs["adacomp supernet search examples/digits.yaml"]
    assert "registered as models:/digits-bundle/1" in outputs["adacomp export examples/digits.yaml"]
    one_search = outputs["adacomp search examples/digits_supernet.yaml --resume"]
    assert "on the Pareto front" in one_search
    assert (
        "supernet: training it once for the whole search (10 ensemble steps)"
        in logs["adacomp search examples/digits_supernet.yaml --resume"] + one_search
    )
    assert (
        "registered as models:/digits-supernet-bundle/1"
        in outputs["adacomp export examples/digits_supernet.yaml"]
    )
    assert (tmp_path / "runs" / "digits-supernet" / "adaptive.png").stat().st_size > 1000
    assert (tmp_path / "runs" / "digits" / "adaptive.png").stat().st_size > 1000
    # calibration (run once, here; test_farm_cli covers its bad input): a report and a profile
    calibrated = outputs["adacomp farm calibrate --device host --models 8 --held-out 2 --rounds 2"]
    assert "within +-10 %" in calibrated and "FLOPs-proportional" in calibrated and "Kendall" in calibrated
    assert "noise floor" in calibrated and "full calibration" in calibrated
    from adacomp.device_farm.profiles import load_profile

    host = load_profile(tmp_path / ".adacomp" / "profiles" / "host.yaml")
    assert host.name == "host" and host.kernel_model is not None and host.kernel_graph == "all"
    few_shot_command = next(command for command in outputs if "--from .adacomp/profiles/host.yaml" in command)
    few_shot = outputs[few_shot_command]
    # Every one of the 6 shots is fitted on, or named as left out because each of its passes was
    # too noisy (two threads on this 2-core machine, beside the other test worker, can be).
    fitted = re.search(r"few-shot calibration of 'host': fitted on (\d+) models", few_shot)
    assert fitted is not None, few_shot
    left_out = re.findall(r"^left out, never measured without noise: (.+)$", logs[few_shot_command], re.M)
    named = [name for names in left_out for name in names.split(", ")]
    assert int(fitted.group(1)) + len(named) == 6 and int(fitted.group(1)) >= 2, (few_shot, left_out)
    two = load_profile(tmp_path / ".adacomp" / "profiles" / "two_threads" / "host.yaml")
    assert two.calibration["threads"] == 2 and two.calibration["mode"] == "few-shot"
