from __future__ import annotations

import threading
import time

import pytest

from adacomp.device_farm import DeviceBusy
from adacomp.device_farm.leases import Lease


def test_one_holder_at_a_time() -> None:
    lease = Lease("d", queue_size=4, timeout_s=5)
    active, peak = 0, 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal active, peak
        with lease.hold():
            with lock:
                active += 1
                peak = max(peak, active)
            time.sleep(0.02)
            with lock:
                active -= 1

    threads = [threading.Thread(target=work) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 1 and not lease.held and lease.waiting == 0


def test_full_queue_is_refused_at_once() -> None:
    lease = Lease("d", queue_size=0, timeout_s=5)
    with lease.hold(), pytest.raises(DeviceBusy, match="queue is full"):
        with lease.hold():
            pass


def test_waiting_times_out() -> None:
    lease = Lease("d", queue_size=1, timeout_s=0.1)
    with lease.hold():
        started = time.monotonic()
        with pytest.raises(DeviceBusy, match="lease timeout"):
            with lease.hold():
                pass
        assert time.monotonic() - started < 2
    assert lease.waiting == 0


def test_released_on_error() -> None:
    lease = Lease("d", queue_size=1, timeout_s=1)
    with pytest.raises(RuntimeError), lease.hold():
        raise RuntimeError("device crashed")
    with lease.hold():
        assert lease.held
