"""Hostile and careless files at every loader (issue 18, items 4, 5 and 7, and the fuzz test).

Each reproduction is a real file given to the real command, which must answer with one line on
stderr and exit code 2 (no traceback), and write nothing. The fuzz test then throws seeded,
generated documents (deep nesting, numbers of hundreds or thousands of digits, NaN, infinities,
bools for numbers, NUL bytes, non-string keys, truncations, garbage) at every JSON/YAML loader:
each either loads or raises the project's error in one line, and nothing is written.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adacomp.device_farm.config import load_farm_config
from adacomp.device_farm.profiles import PROFILE_DIR, load_profile
from adacomp.errors import AdacompError
from adacomp.platform.cli.main import main
from adacomp.platform.results.job_dir import JobDir
from adacomp.platform.search_config import load_search_config
from adacomp.runtime.manifest import load_manifest
from adacomp.runtime.trace import load_trace
from adacomp.search_spaces.plan import CompressionPlan
from tests.runtime.bundles import manifest_dict, write_bundle

REPO = Path(__file__).resolve().parents[1]

SEARCH = """
name: hostile
task: digits
targets: [pixel4]
objectives:
  - {metric: accuracy}
  - {metric: latency, target: pixel4}
constraints:
  - {metric: accuracy_drop, max: 2.0}
trials: 2
output: {dir: runs}
"""
PLAN = json.loads((REPO / "examples" / "plans" / "digits_mixed.json").read_text())


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


def _one_line_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("adacomp: error: "), err[:500]
    for needle in needles:
        assert needle in err, err[:500]
    return err


# --- item 4: the reproductions, through the CLI --------------------------------------


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name: " + "[" * 20_000 + "]" * 20_000, "nested deeper than 64 levels"),
        (SEARCH.replace("trials: 2", "trials: 1" + "0" * 399), "trials: a number longer than 40 digits"),
        (SEARCH.replace("trials: 2", "trials: 1" + "0" * 4999), "a number of thousands of digits"),
        (SEARCH.replace("max: 2.0", "max: .nan"), "constraints[0].max: nan is not a finite number"),
        (SEARCH.replace("name: hostile", 'name: "a\\0b"'), "name: contains a NUL character"),
    ],
    ids=["yaml-20000-deep", "int-400-digits", "int-5000-digits", "nan-bound", "nul"],
)
def test_a_hostile_search_config_is_one_line_and_writes_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    needle: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(text)
    before = _files(tmp_path)
    _one_line_exit_2(capsys, ["search", "c.yaml"], "c.yaml", needle)
    assert _files(tmp_path) == before


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("1" + "0" * 399, "a number longer than 40 digits"),
        ("1" + "0" * 4999, "a number longer than 40 digits"),
    ],
    ids=["400-digits", "5000-digits"],
)
def test_a_plan_with_a_huge_integer_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, needle: str
) -> None:
    plan = tmp_path / "plan.json"
    text = json.dumps(PLAN)
    first_number = next(
        token for token in text.replace(",", " ").replace("}", " ").split() if token[0].isdigit()
    )
    plan.write_text(text.replace(first_number, value, 1))
    before = _files(tmp_path)
    _one_line_exit_2(
        capsys, ["compress", "--task", "digits", "--plan", str(plan), "--out", str(tmp_path / "out")], needle
    )
    assert _files(tmp_path) == before


def test_a_truncated_search_state_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(SEARCH)
    state = tmp_path / "runs" / "hostile" / "search.json"
    state.parent.mkdir(parents=True)
    state.write_text('{"identity": {"name": "hostile", "trials": ')
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    _one_line_exit_2(capsys, ["search", "c.yaml", "--resume"], "search.json", "not valid JSON")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (
            lambda d: d["configurations"][0].__setitem__("file", "models/a\x00.onnx"),
            "contains a NUL character",
        ),
        (
            lambda d: d["configurations"][0].__setitem__("architecture", {"x": _nested(600)}),
            "nested deeper than 32 levels",
        ),
        (lambda d: d["configurations"][0].__setitem__("bytes", 10**400), "a number longer than 40 digits"),
    ],
    ids=["nul-path", "architecture-600-deep", "int-400-digits"],
)
def test_a_hostile_manifest_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mutate: Callable[[dict[str, Any]], None], needle: str
) -> None:
    bundle = write_bundle(tmp_path / "bundle")
    data = json.loads((bundle / "manifest.json").read_text())
    mutate(data)
    (bundle / "manifest.json").write_text(json.dumps(data))
    before = _files(tmp_path)
    _one_line_exit_2(capsys, ["runtime", "simulate", str(bundle)], "manifest.json", needle)
    assert _files(tmp_path) == before


def test_the_cli_never_shows_a_traceback_for_a_hostile_file(tmp_path: Path) -> None:
    """The same through a real process: stderr is one line, the exit code 2."""
    (tmp_path / "c.yaml").write_text("name: " + "[" * 20_000 + "]" * 20_000)
    result = subprocess.run(
        [sys.executable, "-m", "adacomp", "search", "c.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "nested deeper than 64 levels" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


# --- item 5: every command validates what it can before any work -----------------------------


def test_supernet_train_refuses_an_unknown_target_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(SEARCH.replace("[pixel4]", "[pixel4, pixel99]"))
    started = time.perf_counter()
    _one_line_exit_2(capsys, ["supernet", "train", "c.yaml"], "targets: unknown device 'pixel99'")
    assert time.perf_counter() - started < 60  # it used to train for 113 s first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]  # no checkpoints, no MLflow store


# --- the bounded fuzz test --------------------------------------------------------------------


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


HOSTILE_JSON = [
    "[" * 20_000 + "]" * 20_000,
    "[" * 600 + "]" * 600,
    "1" + "0" * 399,
    "-" + "9" * 5000,
    "1e400",
    "NaN",
    "-Infinity",
    "true",
    "null",
    '"a\\u0000b"',
    '"' + "x" * 200_000 + '"',
    "{}",
    "[]",
    '{"1": {"2": [3]}}',
    "-0.0",
    "0.1e-400",
]
HOSTILE_YAML_ONLY = [
    ".nan",
    ".inf",
    "-.inf",
    "0x" + "f" * 80,
    "!!binary aGVsbG8=",
    "&a [*a]",
    "? [a]\n: 1",
    "yes",
]


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*path, k))] or [path]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaves(v, (*path, i))] or [path]
    return [path]


def _mutated(seed_doc: Any, rng: random.Random, yaml: bool) -> str:
    """A document one hostile step away from a valid one, as text."""
    marker = "__HOSTILE_0xC0FFEE__"
    choice = rng.random()
    doc = json.loads(json.dumps(seed_doc))
    if choice < 0.7:
        paths = _leaves(doc)
        path = rng.choice(paths)
        pool = HOSTILE_JSON + (HOSTILE_YAML_ONLY if yaml else [])
        fragment = rng.choice(pool)
        if not path:
            return fragment
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = marker
        return json.dumps(doc).replace(json.dumps(marker), fragment, 1)
    text = json.dumps(doc, indent=1)
    if choice < 0.85:
        return text[: rng.randrange(len(text))]  # cut short
    position = rng.randrange(len(text))
    garbage = "".join(chr(rng.randrange(1, 0x3000)) for _ in range(rng.randrange(1, 12)))
    return text[:position] + garbage + text[position:]


def _bundle_loader(root: Path) -> Callable[[Path], object]:
    bundle = write_bundle(root / "bundle")

    def load(path: Path) -> object:
        (bundle / "manifest.json").write_bytes(path.read_bytes())
        return load_manifest(bundle)

    return load


def _job_state(path: Path) -> object:
    return JobDir(path.parent, path.name, "search 'fuzz'").load()


@pytest.mark.parametrize("seed", [0, 1])
def test_fuzzed_documents_load_or_fail_in_one_line_and_write_nothing(tmp_path: Path, seed: int) -> None:
    import yaml as pyyaml

    search_doc = pyyaml.safe_load(SEARCH)
    farm_doc = {"devices": [{"name": "h", "kind": "host", "cores": [0], "timeout_s": 5.0}], "retries": 1}
    profile_doc = pyyaml.safe_load((PROFILE_DIR / "pixel4.yaml").read_text())
    profile_doc.pop("kernel_model", None)
    trace_doc = [{"t": 0, "battery": 0.9, "latency_budget_ms": 20}, {"t": 1, "battery": 0.8}]
    targets: list[tuple[str, Any, bool, Callable[[Path], object]]] = [
        ("search.yaml", search_doc, True, load_search_config),
        ("farm.yaml", farm_doc, True, load_farm_config),
        ("profile.yaml", profile_doc, True, load_profile),
        ("plan.json", PLAN, False, CompressionPlan.load),
        ("manifest.json", manifest_dict(), False, _bundle_loader(tmp_path)),
        ("trace.json", trace_doc, False, load_trace),
        ("search.json", {"identity": {"name": "x"}, "trials": [1, 2]}, False, _job_state),
    ]
    rng = random.Random(seed)
    work = tmp_path / "work"
    work.mkdir()
    for name, doc, _, _ in targets:
        (work / name).write_text(json.dumps(doc))
    before = _files(tmp_path)
    started = time.perf_counter()
    outcomes = {"loaded": 0, "refused": 0}
    for round_ in range(60):
        for name, doc, is_yaml, load in targets:
            path = work / name
            text = _mutated(doc, rng, is_yaml)
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
            try:
                load(path)
            except AdacompError as exc:
                message = str(exc)
                assert message and "\n" not in message, (name, round_, text[:200], message[:300])
                assert len(message) < 2_000, (name, message[:300])
                outcomes["refused"] += 1
            else:
                outcomes["loaded"] += 1
            assert _files(tmp_path) == before, f"{name} (round {round_}) wrote files"
    assert outcomes["refused"] > 200  # the generator does produce hostile input
    assert time.perf_counter() - started < 120  # bounded: a few seconds on an idle machine
