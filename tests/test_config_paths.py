"""Every path a config names is absolute once loaded (issue 20, item 1).

Ray Tune runs each trial in its own working directory: a relative `store:` resolved next to a
config given by a relative path stayed relative, and the trials after the first failed. The
search on a real two-node cluster with relative paths is in tests/ops/test_cluster_join.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from adacomp.device_farm.config import AdbSpec, AgentSpec, EmulatedSpec, load_farm_config
from adacomp.platform.search_config import load_search_config

FARM = """
devices:
  - {name: h, kind: host, class: host}
  - {name: board, kind: agent, class: rpi4, url: "http://127.0.0.1:1", token_file: secrets/board.token}
  - {name: phone, kind: adb, class: pixel4, benchmark_binary: bin/perf_test, libraries: [lib/libort.so]}
  - {name: mine, kind: emulated, class: pixel4, profile: profiles/mine.yaml}
  - {name: pixel4, kind: emulated, class: pixel4, profile: pixel4}
store: measurements_cluster
"""

SEARCH = """
name: paths
task: digits
targets: [h]
objectives: [{metric: accuracy}]
farm: farm_cluster.yaml
strategy: rl
rl: {init_policy: ../agents/rl_agent}
output: {dir: runs}
"""


def test_paths_are_absolute_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "farm_cluster.yaml").write_text(FARM)
    (configs / "search.yaml").write_text(SEARCH)
    monkeypatch.chdir(tmp_path)  # both given by relative paths, as the user did

    search = load_search_config(Path("configs/search.yaml"))
    assert search.farm == configs / "farm_cluster.yaml"
    assert search.rl.init_policy == tmp_path / "agents" / "rl_agent"
    assert search.output.dir == Path("runs")  # the working directory's, as README documents

    assert search.farm is not None
    farm = load_farm_config(Path("configs") / search.farm.name)
    assert farm.store == configs / "measurements_cluster"
    specs = {spec.name: spec for spec in farm.devices}
    board, phone, mine, builtin = specs["board"], specs["phone"], specs["mine"], specs["pixel4"]
    assert isinstance(board, AgentSpec) and board.token_file == configs / "secrets" / "board.token"
    assert isinstance(phone, AdbSpec) and phone.benchmark_binary == configs / "bin" / "perf_test"
    assert phone.libraries == (configs / "lib" / "libort.so",)
    assert isinstance(mine, EmulatedSpec) and mine.profile == str(configs / "profiles" / "mine.yaml")
    assert isinstance(builtin, EmulatedSpec) and builtin.profile == "pixel4"  # a name, not a path

    monkeypatch.chdir(configs / "..")  # another working directory changes nothing
    for path in (farm.store, board.token_file, phone.benchmark_binary):
        assert path is not None and path.is_absolute()
