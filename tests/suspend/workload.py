"""Concurrent device work for the suspend-cycle tests: threads in this process and a pool."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

import suspend_tasks

import ascend_safe as asf


class Workload:
    """Two threads running local units and two threads feeding the pool, until stopped.

    Local units use a device session that a resume callback re-opens after each wake; pool
    units append their id to a log file once per execution, so a unit lost or run twice shows.
    """

    def __init__(
        self, coordinator: asf.SuspendCoordinator, pool: ProcessPoolExecutor, log: str
    ) -> None:
        self.coordinator = coordinator
        self.pool = pool
        self.log = log
        self.local: list[int] = []
        self.submitted: list[int] = []
        self.results: list[int] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._devices: list[asf.Device] = []
        self._seen = (0, 0)
        coordinator.on_resume(self._open_device)
        self._open_device()
        self._threads = [
            threading.Thread(target=self._local_units, args=(k * 10**6,)) for k in range(2)
        ]
        self._threads += [
            threading.Thread(target=self._pool_units, args=(k * 10**6,)) for k in (5, 6)
        ]

    def _open_device(self) -> None:
        self._devices.append(asf.Device(0))

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def _local_units(self, i: int) -> None:
        try:
            while not self._stop.is_set():
                with self.coordinator.work():
                    dev = self._devices[-1]
                    with dev.stream() as stream:
                        payload = i.to_bytes(4, "little") * 4
                        assert suspend_tasks.round_trip(dev, stream, payload) == payload
                    self.local.append(i)
                i += 1
        except BaseException as exc:
            self.errors.append(exc)

    def _pool_units(self, i: int) -> None:
        try:
            while not self._stop.is_set():
                self.submitted.append(i)
                future = self.pool.submit(suspend_tasks.pool_unit, i, self.log)
                self.results.append(future.result(60)[0])
                i += 1
        except BaseException as exc:
            self.errors.append(exc)

    def progressed(self, timeout: float = 30.0) -> bool:
        """Wait until a local unit and a pool unit have finished since the last call, so every
        suspend/resume cycle overlaps real work."""
        deadline = time.monotonic() + timeout
        local, pooled = self._seen
        while len(self.local) <= local or len(self.results) <= pooled:
            if time.monotonic() > deadline or self.errors:
                return False
            time.sleep(0.001)
        self._seen = (len(self.local), len(self.results))
        return True

    def stop(self) -> None:
        """Stop, close the local sessions and check: no error, no unit lost or doubled."""
        self._stop.set()
        for t in self._threads:
            t.join(60)
        for dev in self._devices:
            dev.close()
        assert self.errors == []
        assert len(self.local) == len(set(self.local)) > 0
        assert sorted(self.results) == sorted(self.submitted)  # none lost
        executed: Counter[int] = Counter()
        if os.path.exists(self.log):
            with open(self.log, encoding="utf-8") as handle:
                executed.update(int(line) for line in handle)
        assert set(executed) == set(self.submitted)
        assert set(executed.values()) <= {1}  # none twice
