"""A calibration never loses its work: a model that does not build is skipped with one line, a
killed calibration resumes from its journal without measuring again what it had, and its
progress is shown as it goes (issue 38, part 1). Real host measurements, real ONNX Runtime."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from adacomp.device_farm import MeasurementStore
from adacomp.errors import AdacompError
from adacomp.platform.cli.calibration_bar import CalibrationBar
from adacomp.platform.cli.main import main
from adacomp.platform.ops import calibration_models as generator
from adacomp.platform.ops.calibration_journal import CalibrationJournal, Failed, Pass
from adacomp.platform.ops.calibration_models import CalibrationModel, calibration_models

ROOT = Path(__file__).resolve().parents[2]
FLAGS = ("--device", "host", "--models", "8", "--held-out", "2", "--rounds", "1", "--no-repeat")


def _passes(journal: Path) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    return [line for line in lines if line["kind"] == "pass"]


@pytest.mark.slow
def test_a_killed_calibration_resumes_without_measuring_again(tmp_path: Path) -> None:
    out, store = tmp_path / "out", tmp_path / "store"
    args = ["farm", "calibrate", *FLAGS, "--out", str(out), "--store", str(store)]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    first = subprocess.Popen(
        [sys.executable, "-m", "adacomp.platform.cli", *args],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    journal = out / "host.calibration.jsonl"
    deadline = time.monotonic() + 300
    while not journal.exists() or len(_passes(journal)) < 3:
        assert first.poll() is None, first.stderr.read().decode() if first.stderr else ""
        assert time.monotonic() < deadline, "the calibration never measured three passes"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before = _passes(journal)
    measured_before = len(MeasurementStore(store).rows())
    assert measured_before >= len(before)  # each pass was kept in the store as it was taken

    # A new calibration over it would mix two: refused in one line, nothing touched.
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert main(args) == 2
    assert "holds a calibration already; pass --resume" in stderr.getvalue()
    with contextlib.redirect_stderr(io.StringIO()) as changed:
        assert main([*args, "--resume", "--seed", "1"]) == 2
    assert "was started with other options: seed 0 (now 1)" in changed.getvalue()
    assert _passes(journal) == before

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert main([*args, "--resume"]) == 0
    said = stderr.getvalue()
    assert f"its {len(before)} passes are not measured again" in said
    assert "calibrating: " in said and " steps, " in said  # the progress, in a log
    after = _passes(journal)
    assert after[: len(before)] == before  # kept as they were
    # Only what was missing was measured: one store row per new pass, no more.
    assert len(MeasurementStore(store).rows()) == measured_before + len(after) - len(before)
    assert len(MeasurementStore(store).parts()) == 1  # compacted at the end
    assert (out / "host.yaml").is_file()


def test_a_model_that_does_not_build_is_skipped_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The generator's own failure is forced here (the space no longer proposes plans that do not
    build, tests/search_spaces/test_plans_build.py): what is checked is that one model's failure
    costs that model only."""
    real = generator.calibration_model

    def second_fails(index: int, seed: int, weights: object = None) -> CalibrationModel:
        if index == 1:
            raise AdacompError(
                "layer 'features.conv2': 'fire' does not apply (needs at least 4 input channels)"
            )
        return real(index, seed, weights)  # type: ignore[arg-type]

    monkeypatch.setattr(generator, "calibration_model", second_fails)
    said: list[str] = []
    models = list(calibration_models(3, seed=5, skipped=said.append))
    assert [m.index for m in models] == [0, 2, 3]
    assert said == [
        "generated model 1 skipped, it does not build: layer 'features.conv2': 'fire' does not apply "
        "(needs at least 4 input channels)"
    ]


def test_the_journal_reads_back_models_and_passes(tmp_path: Path) -> None:
    options = {"device": "host", "models": 8, "seed": 0}
    journal = CalibrationJournal(tmp_path, "host", options, resume=False)
    model = CalibrationModel("random1:fp32", "random", b"onnx bytes", 1)
    journal.put("0:1:uniform", model)
    journal.add_pass("fit", model.name, Pass(0.25, {"conv0": 0.1}))
    journal.add_pass("fit", model.name, Failed("too noisy"))
    with journal.path.open("a") as torn:
        torn.write('{"number": 99, "kind": "pa')  # a write cut short by a kill
    again = CalibrationJournal(tmp_path, "host", options, resume=True)
    assert again.get("0:1:uniform") == model and again.get("0:2:uniform") is None
    assert again.passes("fit", model.name) == [Pass(0.25, {"conv0": 0.1}), Failed("too noisy")]
    assert again.measured == 2
    (again.models_dir / f"{_sha(model.data)}.onnx").write_bytes(b"changed")
    assert again.get("0:1:uniform") is None  # a model file that changed is generated again


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_the_bar_prints_a_line_per_tenth_and_per_phase_off_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with CalibrationBar(Console(file=io.StringIO(), force_terminal=False)) as bar:
        bar.plan(20)
        for _ in range(10):
            bar.advance("generating models")
        for _ in range(10):
            bar.advance("pass 1/2")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("calibrating: generating models: 1/20 steps")
    assert any(line.startswith("calibrating: pass 1/2: 11/20 steps") for line in lines)
    assert lines[-1].startswith("calibrating: pass 1/2: 20/20 steps") and "~0s left" in lines[-1]
    assert len(lines) == 12  # a line per phase change and per tenth, not per step
