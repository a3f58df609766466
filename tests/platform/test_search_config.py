from __future__ import annotations

from pathlib import Path

import pytest

from adacomp.errors import AdacompError
from adacomp.platform.evaluate.objectives import constraint_violations, is_feasible, utility
from adacomp.platform.search_config import SearchConfig, load_search_config

GOOD = """
name: digits-search
task: digits
targets: [pixel4, host]
objectives:
  - {metric: accuracy}
  - {metric: latency, target: pixel4}
  - {metric: storage}
constraints:
  - {metric: latency, target: pixel4, max: 20}
  - {metric: accuracy_drop, max: 1.0}
utility: {accuracy: 1.0, latency: 0.5, storage: 0.25}
trials: 8
output: {dir: out}
"""


def _config(tmp_path: Path, text: str) -> SearchConfig:
    path = tmp_path / "search.yaml"
    path.write_text(text)
    return load_search_config(path)


def test_good_config_loads_with_defaults(tmp_path: Path) -> None:
    config = _config(tmp_path, GOOD)
    assert [o.key for o in config.objectives] == ["accuracy", "latency_pixel4", "storage"]
    assert [o.mode for o in config.objectives] == ["max", "min", "min"]
    assert config.strategy == "nsga2" and config.output.dir == Path("out")  # relative to the cwd


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("trials: 8", "trials: 0"), "trials: Input should be greater than or equal to 1"),
        (
            ("{metric: latency, target: pixel4}", "{metric: latency}"),
            "objectives.1: Value error, objective 'latency' is per device",
        ),
        (("{metric: storage}", "{metric: storage, target: host}"), "is per model"),
        (
            ("{metric: latency, target: pixel4, max: 20}", "{metric: latency, target: rpi9, max: 20}"),
            "'rpi9', which is not in targets",
        ),
        (("{metric: accuracy_drop, max: 1.0}", "{metric: accuracy_drop}"), "needs 'max' or 'min'"),
        (("{metric: storage}", "{metric: size}"), "objectives.2.metric"),
        (("task: digits", "task: digits\nbogus: 1"), "bogus"),
        (("{metric: storage}", "{metric: accuracy}"), "listed twice"),
    ],
)
def test_bad_configs_name_the_field(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    with pytest.raises(AdacompError, match=message) as info:
        _config(tmp_path, GOOD.replace(*change))
    assert "search.yaml" in str(info.value) and "\n" not in str(info.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(AdacompError, match="does not exist"):
        load_search_config(tmp_path / "nope.yaml")
    with pytest.raises(AdacompError, match="not valid YAML"):
        _config(tmp_path, "name: [")
    with pytest.raises(AdacompError, match="expected a mapping"):
        _config(tmp_path, "- 1")


def test_feasibility_and_utility(tmp_path: Path) -> None:
    config = _config(tmp_path, GOOD)
    baseline = {"accuracy": 0.99, "latency_pixel4": 10.0, "latency_host": 1.0, "storage": 1000.0}
    good = {
        "accuracy": 0.98,
        "accuracy_drop": 1.0,
        "latency_pixel4": 5.0,
        "latency_host": 0.5,
        "storage": 250.0,
    }
    slow = {**good, "latency_pixel4": 25.0}
    assert is_feasible(config, good)
    assert constraint_violations(config, slow) == [5.0, 0.0]
    assert not is_feasible(config, {**good, "latency_pixel4": None})  # unknown is never feasible
    # 1.0 * 0.98/0.99 - 0.5 * mean(0.5, 0.5) - 0.25 * 0.25
    assert utility(config, good, baseline) == pytest.approx(0.98 / 0.99 - 0.25 - 0.0625)
    assert utility(config, baseline, baseline) == pytest.approx(1.0 - 0.5 - 0.25)
    assert utility(config, good, baseline) > utility(config, baseline, baseline)
