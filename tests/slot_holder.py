"""Helper process for tests/test_slots.py: take a device slot and hold it.

Usage: ``slot_holder.py DEVICE LIMIT [--timeout S] [--release-after S] [--fork]``.

Prints ``ready INDEX PID`` once it holds a slot (or ``full PID,PID,...`` and exits 3 when the
device is full), then holds the slot until stdin reaches EOF. ``--release-after S`` releases
the slot S seconds after ``ready`` and prints ``released``. ``--fork`` forks a child after
acquiring; the child prints ``child PID RELEASED FDS`` (whether its inherited DeviceSlot is
released, and how many of its descriptors still point at the slot file) and also waits for
EOF on stdin, so it outlives a killed parent.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from ascend_safe.errors import ProcessLimitError
from ascend_safe.slots import DeviceSlot, acquire


def _fds_on(path: str) -> int:
    """How many of this process's descriptors refer to *path*."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == path:
                count += 1
        except OSError:
            pass
    return count


def _say(line: str) -> None:
    """One whole line in one write(2), so parent and forked child never interleave."""
    os.write(1, (line + "\n").encode())


def _child(slot: DeviceSlot) -> None:
    try:
        _say(f"child {os.getpid()} {slot.released} {_fds_on(slot.path)}")
        sys.stdin.read()
    finally:
        os._exit(0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("device", type=int)
    parser.add_argument("limit", type=int)
    parser.add_argument("--timeout", type=float, default=0.0)
    parser.add_argument("--release-after", type=float, default=None)
    parser.add_argument("--fork", action="store_true")
    args = parser.parse_args()
    try:
        slot = acquire(args.device, args.limit, timeout=args.timeout)
    except ProcessLimitError as exc:
        _say("full " + ",".join(str(pid) for pid in exc.holders))
        return 3
    if args.fork and os.fork() == 0:
        _child(slot)
    _say(f"ready {slot.index} {os.getpid()}")
    if args.release_after is not None:
        time.sleep(args.release_after)
        slot.release()
        _say("released")
    sys.stdin.read()
    slot.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
