"""What the whole suite shares: one baseline cache, one local Ray, and small real models
(2-D CNN with a flatten head, 1-D CNN, residual net).

Session-wide, so that the work a test needs is done once per run and not once per module:
- `ADACOMP_CACHE` points at one temporary folder for the run (subprocesses inherit it): each
  baseline (the tiny and digits tasks above all) is trained by the first test that needs it and
  loaded by every later one, and nothing is written to the user's ~/.cache/adacomp. A test that
  must start from an empty cache sets its own and says so.
- `shared_ray` is one local Ray for every test that is not about Ray's own lifecycle: a search
  run in this process joins an initialised Ray instead of starting its own (search/job.py), so
  each such test saves a Ray start and stop. A test about that lifecycle (a search that starts,
  pins and stops its own Ray; the watchdog) asks for `cold_ray`, which stops the shared one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.helpers.small_models import ResidualNet, Small1D, SmallCNN, randomise_bn


def pytest_configure(config: pytest.Config) -> None:
    """Torch works on one thread in every test process and in the processes tests start (they
    inherit OMP_NUM_THREADS): the models here are tiny, and two pytest-xdist workers, each with an
    OpenMP pool as wide as the machine, spun on each other's cores (tests/tasks and
    tests/search_spaces, 2 workers on 2 cores: pytest 200 s with torch's default, 81 s with one
    thread; 131 s in one process). A test about threads sets its own; a caller's OMP_NUM_THREADS wins."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


# Modules that share one fixture too costly to build twice run on one pytest-xdist worker: the
# two-node Ray cluster of tests/ops/conftest.py (its `ray start` once per run, not per worker).
SAME_WORKER = {
    "tests/ops/test_cluster_join.py": "ray_cluster",
    "tests/ops/test_submit.py": "ray_cluster",
}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """`make test` runs two pytest-xdist workers (the suite left a third of two cores idle while
    it waited on subprocesses, servers and Ray). A module goes whole to one worker, so its module
    fixtures (a finished search, a server) are built once; SAME_WORKER groups a few modules more.
    Modules are handed out in collection order, which puts the slow ones first (below), so the
    last minutes are short modules that even out the two workers."""
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return SAME_WORKER.get(module, module)

    config.option.loadscopereorder = False  # xdist would put modules with the most tests first
    return ByModule(config, log)  # type: ignore[arg-type]


# Seconds the longest modules (scopes) took in `make test` on 2 cores (pytest's --durations, summed
# per module, issue 37 round 5). Modules are handed out longest first, as in LPT scheduling: in
# path order the two longest (test_benchmarks, test_readme) were the last slow modules handed
# out, so the run ended minutes after the other worker ran dry. Order only: a stale figure
# costs time, never a result. A slow module not listed counts as SLOW_DEFAULT_S.
MODULE_SECONDS = {
    "tests/test_benchmarks.py": 190,
    "tests/test_readme.py": 160,
    "tests/platform/test_search_resume.py": 150,
    "tests/ops/test_mlflow_server.py": 120,
    "ray_cluster": 116,  # tests/ops/test_cluster_join.py and test_submit.py, one worker
    "tests/platform/test_rl_search.py": 70,
    "tests/search_spaces/test_plans_build.py": 55,
    "tests/platform/test_calibration_resume.py": 50,
}
SLOW_DEFAULT_S = 40


def _scope(item: pytest.Item) -> str:
    module = item.nodeid.split("::", 1)[0]
    return SAME_WORKER.get(module, module)


@pytest.hookimpl(trylast=True)  # after tests/ops/conftest.py's own order, which this keeps
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with a test marked slow run first, the longest first (MODULE_SECONDS), each
    module's tests together and in their own order (a stable sort): with two workers, the long
    modules start at once, not at the end."""
    slow = {_scope(item) for item in items if item.get_closest_marker("slow")}

    def key(item: pytest.Item) -> tuple[bool, int]:
        scope = _scope(item)
        return scope not in slow, -MODULE_SECONDS.get(scope, SLOW_DEFAULT_S if scope in slow else 0)

    items.sort(key=key)


@pytest.fixture
def cnn() -> nn.Module:
    torch.manual_seed(0)
    return randomise_bn(SmallCNN())


@pytest.fixture
def cnn_input() -> torch.Tensor:
    return torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))


@pytest.fixture
def residual_net() -> nn.Module:
    torch.manual_seed(0)
    return randomise_bn(ResidualNet())


@pytest.fixture
def net1d() -> nn.Module:
    torch.manual_seed(0)
    return Small1D().eval()


@pytest.fixture
def input1d() -> torch.Tensor:
    return torch.randn(4, 1, 20, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One baseline cache for the run (see the module docstring); the caller's value comes back."""
    # Under pytest-xdist every worker is a session of its own; they share one cache folder (beside
    # their own temporary folders), so a baseline is trained once per run, not once per worker.
    # The cache writes atomically, so two workers that train the same baseline at once are safe.
    cache = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        cache = cache.parent
    cache = cache / "adacomp-cache"
    cache.mkdir(exist_ok=True)
    before = os.environ.get("ADACOMP_CACHE")
    os.environ["ADACOMP_CACHE"] = str(cache)
    try:
        yield cache
    finally:
        if before is None:
            os.environ.pop("ADACOMP_CACHE", None)
        else:
            os.environ["ADACOMP_CACHE"] = before


# What a local search offers its workers (ray_farm.init_local_ray): two CPUs for trials and a
# `device:host` for the host device's actor, so a search with a `host` target places it here too.
SHARED_RAY = {"num_cpus": 2, "resources": {"device:host": 1.0}}


@pytest.fixture(scope="session")
def _stop_shared_ray_at_exit() -> Iterator[None]:
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="module")
def shared_ray(_stop_shared_ray_at_exit: None) -> str:
    """The run's local Ray, started by the first module that asks and kept for the next ones
    (started again after a `cold_ray` test stopped it); returns its GCS address."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            **SHARED_RAY,  # type: ignore[arg-type]
        )
    return str(ray.get_runtime_context().gcs_address)


@pytest.fixture
def cold_ray() -> None:
    """No Ray in this process: for a test of what starting, pinning or stopping Ray does."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
