"""A suspend-aware service loop: requests keep coming while the system sleeps and wakes.

Runs on the built-in simulator unless ASCEND_SAFE_BACKEND says otherwise.

Shows:
- ``SuspendCoordinator.work()`` around each unit of device work: during a sleep new units wait
  at the gate, in-flight ones drain, and every device resource is released in order;
- ``on_resume`` callbacks re-create what the process needs (a device session and a stream)
  after the wake, before the waiting units run: none is lost, none runs twice;
- the event sources: systemd-logind when the machine has it, else POSIX signals (``SIGUSR1``
  before a sleep, ``SIGCONT`` after it), here sent from a timer as an orchestrator would.
"""

from __future__ import annotations

import os
import signal
import threading

os.environ.setdefault("ASCEND_SAFE_BACKEND", "sim")

import ascend_safe as asf

coordinator = asf.SuspendCoordinator(drain_timeout=10)
state = {}


@coordinator.on_resume  # after every wake: everything was released for the sleep
def load() -> None:
    state["device"] = asf.Device(0)
    state["stream"] = state["device"].stream()


def handle(request: bytes) -> bytes:
    with coordinator.work():  # one unit of device work: waits while suspended
        device, stream = state["device"], state["stream"]
        with device.malloc(len(request)) as mem:
            mem.copy_from(request, stream=stream)
            reply = bytearray(len(request))
            mem.copy_to(reply, stream=stream)
            stream.synchronize()
        return bytes(reply)


load()
try:
    coordinator.listen_logind()  # systemd-logind: a delay inhibitor and PrepareForSleep
except (ImportError, ConnectionError) as exc:
    print(f"no logind here ({type(exc).__name__}); using signals and direct calls only")
coordinator.listen_signals()  # kill -USR1 <pid> before a sleep, kill -CONT <pid> after it

for i in range(100):
    if i == 50:  # what an orchestrator does around a sleep, here from a timer
        os.kill(os.getpid(), signal.SIGUSR1)
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGCONT)).start()
    assert handle(bytes([i]) * 64) == bytes([i]) * 64

print(f"{coordinator.suspends} suspend(s), {coordinator.cancelled_units} unit(s) cancelled")
coordinator.close()
state["device"].close()
