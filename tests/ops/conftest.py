"""`ray_cluster`: the one real Ray cluster of the ops tests (tests/helpers/ray_cluster.py), a
two-node token-auth cluster on loopback that test_cluster_join.py and test_submit.py share, so
that `ray start` runs once per test run and not once per module.

The tests that ask for it run last among the ops tests (`pytest_collection_modifyitems`), one
after the other: the cluster, package-scoped, is then stopped right after the last of them, and
no other test runs beside it.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.ray_cluster import Cluster, two_node_cluster
from tests.loopback import RAY_DEFAULT_AGENT_PORT

HERE = Path(__file__).parent
FIXTURE = "ray_cluster"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Moves the tests that use `ray_cluster` behind the last other test of this package (their
    own order kept): the package's teardown, which stops the cluster, then follows them."""
    users = [i for i in items if i.path.is_relative_to(HERE) and FIXTURE in getattr(i, "fixturenames", ())]
    if not users:
        return
    moved = set(map(id, users))
    rest = [item for item in items if id(item) not in moved]
    others = [i for i, item in enumerate(rest) if item.path.is_relative_to(HERE)]
    at = max([items.index(users[0])] + [i + 1 for i in others[-1:]])
    items[:] = rest[:at] + users + rest[at:]


@pytest.fixture(scope="package")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The cluster, up and joined. It runs while Ray's default agent port is held, as another Ray
    on the machine would hold it: its nodes must not depend on that port (`own_ray_head_ports`),
    or the head has no job agent and `adacomp submit` fails."""
    with socket.socket() as taken:
        with contextlib.suppress(OSError):  # already taken by someone else: the same situation
            taken.bind(("0.0.0.0", RAY_DEFAULT_AGENT_PORT))
            taken.listen()
        with two_node_cluster(tmp_path_factory.mktemp("secrets")) as cluster:
            yield cluster
