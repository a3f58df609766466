"""A search killed with its process group leaves no Ray helpers behind (issue 20, item 7).

Ray's agents and workers run in process groups of their own, so SIGKILL of the search's group
missed them (they lived 8-70 s more). The watchdog a local Ray search starts, in a session of
its own, kills the driver's descendants once the driver is gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from adacomp.platform.search import ray_watchdog

REPO = Path(__file__).resolve().parents[2]

# A driver whose children run in their own sessions, as Ray's helpers do; it prints their ids.
DRIVER = """
import subprocess, sys, time
children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
            for _ in range(3)]
print(" ".join(str(c.pid) for c in children), flush=True)
time.sleep(600)
"""


def _gone(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(
            psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids
        ):
            return True
        time.sleep(0.2)
    return False


def test_the_watchdog_kills_what_a_killed_driver_left() -> None:
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert driver.stdout is not None
    children = [int(pid) for pid in driver.stdout.readline().split()]
    watchdog = ray_watchdog.start(driver.pid)
    try:
        time.sleep(2 * ray_watchdog.POLL_S + 1)  # it has seen the children
        os.killpg(driver.pid, signal.SIGKILL)  # the group: the children, in theirs, survive it
        driver.wait()
        assert _gone(children, 15), "the driver's children outlived it"
        assert watchdog.wait(timeout=15) == 0  # and the watchdog is done too
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if watchdog.poll() is None:
            watchdog.kill()


def test_the_watchdog_never_kills_a_process_that_reused_an_id() -> None:
    """Only processes it saw, with the start time it saw: an id reused later is left alone."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = psutil.Process(bystander.pid).create_time()
        assert ray_watchdog._kill({bystander.pid: started - 100.0}) == 0
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_the_watchdog_kills_what_a_seen_process_started_after_its_last_look() -> None:
    """A worker the raylet spawned after the watchdog's last poll is not in its snapshot; it is
    still the raylet's child, so the kill finds it there (it outlived the kill on a busy machine)."""
    parent = subprocess.Popen(
        [sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert parent.stdout is not None
    late = [int(pid) for pid in parent.stdout.readline().split()]  # started after the snapshot below
    try:
        snapshot = {parent.pid: psutil.Process(parent.pid).create_time()}
        assert ray_watchdog._kill(snapshot) == 1 + len(late)
        parent.wait(timeout=15)
        assert _gone(late, 15), "a child the snapshot did not hold outlived the kill"
    finally:
        for pid in [parent.pid, *late]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# A raylet that starts a worker nobody's child (double fork), as a worker is once its raylet dies
# in the driver's group kill; the worker carries the raylet's id as Ray's workers do. It is
# exec'd after argv[1] seconds: until then it is a fork of the raylet, without the id.
RAYLET = """
import os, sys, time
raylet = os.getpid()
if os.fork() == 0:
    if os.fork() == 0:
        print(os.getpid(), flush=True)
        time.sleep(float(sys.argv[1]))
        os.execve(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)"],
                  {**os.environ, "RAY_RAYLET_PID": str(raylet)})
    os._exit(0)
os.wait()
time.sleep(600)
"""


def _descends(pid: int, ancestor: int) -> bool:
    return pid in {p.pid for p in psutil.Process(ancestor).children(recursive=True)}


@pytest.mark.parametrize("exec_after_s", [0.0, 1.0])
def test_the_watchdog_kills_a_worker_its_raylet_started_though_no_one_is_its_parent(
    exec_after_s: float,
) -> None:
    """Found by its RAY_RAYLET_PID; one still a bare fork at the kill is found once it execs."""
    raylet = subprocess.Popen(
        [sys.executable, "-c", RAYLET, str(exec_after_s)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert raylet.stdout is not None
    worker = int(raylet.stdout.readline())
    bystander = subprocess.Popen(  # names another raylet: left alone
        [sys.executable, "-c", "import time; time.sleep(60)"], env={**os.environ, "RAY_RAYLET_PID": "1"}
    )
    try:
        # The worker prints its id before the fork between it and the raylet has exited: on a busy
        # machine it is still the raylet's grandchild for a moment.
        deadline = time.monotonic() + 15
        while _descends(worker, raylet.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _descends(worker, raylet.pid)
        if exec_after_s == 0.0:
            deadline = time.monotonic() + 15  # the worker has exec'd (carries the id) before the kill
            while "RAY_RAYLET_PID" not in psutil.Process(worker).environ() and time.monotonic() < deadline:
                time.sleep(0.05)
        assert exec_after_s < ray_watchdog.SWEEP_S
        snapshot = {raylet.pid: psutil.Process(raylet.pid).create_time()}
        assert ray_watchdog._kill(snapshot) == 2
        raylet.wait(timeout=15)
        assert _gone([worker], 15), "the orphaned worker outlived the kill"
        assert bystander.poll() is None
    finally:
        for pid in [raylet.pid, worker]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        bystander.kill()
        bystander.wait()


@pytest.mark.slow
def test_a_search_killed_with_its_group_leaves_no_ray_processes(tmp_path: Path) -> None:
    config = {
        "name": "killed",
        "task": "tests.platform.tiny_task:tiny_digits",
        "targets": ["pixel4"],
        "objectives": [{"metric": "accuracy"}, {"metric": "latency", "target": "pixel4"}],
        "finetune": {"steps": 2000},
        "trials": 4,
        "concurrency": 2,
        "strategy": "random",
        "output": {"dir": str(tmp_path / "runs")},
    }
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(config))
    search = subprocess.Popen(
        [sys.executable, "-m", "adacomp", "search", "search.yaml", "--quiet"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        outside_group: list[psutil.Process] = []
        while time.monotonic() < deadline:  # Ray is up, with helpers in groups of their own
            descendants = psutil.Process(search.pid).children(recursive=True)
            outside_group = [p for p in descendants if _is_ray(p) and _group(p) not in (search.pid, None)]
            if len(outside_group) >= 2 and (tmp_path / "runs" / "killed" / "search.json").exists():
                break
            assert search.poll() is None, "the search ended before its trials ran"
            time.sleep(1)
        else:
            pytest.fail("the search's Ray never started helpers outside its process group")
        time.sleep(3)  # trials under way
        ray_processes = [p for p in psutil.Process(search.pid).children(recursive=True) if _is_ray(p)]
        os.killpg(search.pid, signal.SIGKILL)
        search.wait()
        assert _gone([p.pid for p in ray_processes], 20), [_name(p) for p in ray_processes if p.is_running()]
    finally:
        if search.poll() is None:
            os.killpg(search.pid, signal.SIGKILL)


def _name(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())[:200]
    except psutil.Error:
        return ""


def _group(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except ProcessLookupError:
        return None


def _is_ray(process: psutil.Process) -> bool:
    text = _name(process)
    return "ray" in text or "raylet" in text or "gcs_server" in text
