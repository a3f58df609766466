"""Exclusive leases: one measurement per real device at a time, a bounded queue, a timeout.

A measurement is only as good as its isolation: two models timed at once on one phone both
come out wrong. Callers beyond the queue bound are refused at once rather than piling up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from adacomp.device_farm.devices._base import DeviceError


class DeviceBusy(DeviceError):
    """The device's queue is full, or the caller's turn did not come within the timeout."""


class Lease:
    def __init__(self, device: str, queue_size: int, timeout_s: float) -> None:
        self.device = device
        self.queue_size = queue_size
        self.timeout_s = timeout_s
        self._condition = threading.Condition()
        self._held = False
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def held(self) -> bool:
        return self._held

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the device; released on exit, whatever happens inside."""
        with self._condition:
            if self._held and self._waiting >= self.queue_size:
                raise DeviceBusy(
                    f"device {self.device!r} is busy and its queue is full ({self.queue_size} waiting)"
                )
            self._waiting += 1
            deadline = time.monotonic() + self.timeout_s
            try:
                while self._held:
                    remaining = deadline - time.monotonic()
                    timed_out = remaining <= 0 or not self._condition.wait(remaining)
                    if timed_out and self._held:
                        raise DeviceBusy(
                            f"device {self.device!r}: no turn within {self.timeout_s:g} s (lease timeout)"
                        )
            finally:
                self._waiting -= 1
            self._held = True
        try:
            yield
        finally:
            with self._condition:
                self._held = False
                self._condition.notify()
