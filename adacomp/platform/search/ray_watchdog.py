"""Stops what a search's local Ray started when the search dies without stopping it.

Ray's helpers (dashboard and runtime-env agents, workers) run in their own process groups:
after SIGKILL of a search's group they lived on for 8-70 s, holding cores and memory, while the
restarted search started a second Ray beside them. A search that starts a local Ray also
starts this watchdog, in a session of its own so the same kill misses it. It keeps a snapshot
of the driver's descendants (process id and start time, so a reused id is never killed), and
when the driver is gone it kills those still running, and the workers their raylet started
since its last look, then exits. A driver that stops Ray itself leaves nothing to kill.

Run as `python -m adacomp.platform.search.ray_watchdog DRIVER_PID`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable

import psutil

POLL_S = 0.5
SWEEP_S = 3.0  # after the kill, how long workers of its raylets are still looked for
SWEEP_POLL_S = 0.25


def _descendants(process: psutil.Process) -> dict[int, float]:
    try:
        children = process.children(recursive=True)
    except psutil.Error:
        return {}
    found: dict[int, float] = {}
    for child in children:
        try:
            found[child.pid] = child.create_time()
        except psutil.Error:
            continue
    return found


def _still_ours(snapshot: dict[int, float]) -> list[psutil.Process]:
    """The snapshot's processes still running as themselves (a reused id is someone else's)."""
    alive = []
    for pid, started in snapshot.items():
        try:
            process = psutil.Process(pid)
            if process.create_time() == started and pid != os.getpid():
                alive.append(process)
        except psutil.Error:
            continue
    return alive


def _kill(snapshot: dict[int, float]) -> int:
    """Stop (SIGSTOP) the snapshot's living processes, then what they started since the last
    poll (an orphaned raylet's workers stay its children), walking again until no new one
    appears; then kill them all. A raylet that sees its workers die starts new ones, so killing
    while it still ran left a worker started in between (seen under two test workers)."""
    stopped: dict[int, psutil.Process] = {}
    pending = _still_ours(snapshot)
    for _ in range(20):  # a fixed point in one or two walks; the bound only guards a fork storm
        if not pending:
            break
        for process in pending:
            with contextlib.suppress(psutil.Error):
                process.suspend()
                stopped[process.pid] = process
        pending = list(
            {child.pid: child for child in _children(stopped.values()) if child.pid not in stopped}.values()
        )
    # Everything still running that could start a worker is stopped now: what a raylet started
    # before that, orphaned when the group's kill took the raylet, is found by its raylet's id.
    for process in _workers_of(snapshot):
        with contextlib.suppress(psutil.Error):
            process.suspend()
            stopped.setdefault(process.pid, process)
    killed = 0
    for process in stopped.values():
        try:
            process.kill()
            killed += 1
        except psutil.Error:
            continue
    return killed + _sweep(snapshot, set(stopped))


def _sweep(snapshot: dict[int, float], done: set[int]) -> int:
    """Kill the workers of the snapshot's raylets that appear for `SWEEP_S` more seconds. A
    worker the raylet had forked but not yet exec'd at the kill carries the raylet's environment
    (no RAY_RAYLET_PID) and is nobody's child; it gets its worker environment at the exec (one
    outlived the kill by 20 s with a core kept busy)."""
    killed = 0
    deadline = time.monotonic() + SWEEP_S
    while True:
        for process in _workers_of(snapshot):
            if process.pid in done:
                continue
            with contextlib.suppress(psutil.Error):
                process.kill()
                killed += 1
            done.add(process.pid)
        if time.monotonic() >= deadline:
            return killed
        time.sleep(SWEEP_POLL_S)


def _workers_of(snapshot: dict[int, float]) -> list[psutil.Process]:
    """Processes whose raylet (Ray puts its id in each worker's RAY_RAYLET_PID) is one the
    snapshot holds, started after it. A worker the raylet spawned after the last poll is not in
    the snapshot; when the raylet died in the driver's group kill, that worker is no one's child
    (a fresh worker outlived the kill by 20 s under two test workers)."""
    found: list[psutil.Process] = []
    for process in psutil.process_iter(["create_time"]):
        try:
            raylet = int(process.environ().get("RAY_RAYLET_PID", "0"))
        except (psutil.Error, ValueError):
            continue
        raylet_started = snapshot.get(raylet)
        if raylet_started is not None and process.info["create_time"] >= raylet_started:
            found.append(process)
    return found


def _children(processes: Iterable[psutil.Process]) -> list[psutil.Process]:
    found: list[psutil.Process] = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            found.extend(process.children(recursive=True))
    return found


def watch(driver_pid: int) -> int:
    """Until the driver is gone; returns how many of its leftovers were killed."""
    try:
        driver = psutil.Process(driver_pid)
    except psutil.Error:
        return 0
    snapshot: dict[int, float] = {}
    while True:
        try:
            alive = driver.is_running() and driver.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            alive = False
        if not alive:
            return _kill(snapshot)
        snapshot.update(_descendants(driver))
        time.sleep(POLL_S)


def start(driver_pid: int | None = None) -> subprocess.Popen[bytes]:
    """The watchdog of this process (or `driver_pid`), in its own session, silent."""
    return subprocess.Popen(
        [sys.executable, "-m", "adacomp.platform.search.ray_watchdog", str(driver_pid or os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the terminal is the driver's
    watch(int(sys.argv[1]))


if __name__ == "__main__":
    main()
