"""Streams and events: async copies, timing with events, and double buffering.

Runs on the built-in simulator unless ASCEND_SAFE_BACKEND says otherwise. On the simulator each
queued task takes ``ASCEND_SAFE_SIM_ASYNC_DELAY`` seconds (set here to 5 ms) so that overlap
shows in the timings.

Shows:
- an async copy from a pageable buffer takes a snapshot of it when queued: changing the buffer
  afterwards does not change what is copied;
- an async copy into a pageable buffer is delivered when the stream (or an event after it) is
  synchronized, not before;
- ``Event.elapsed_time`` between two recorded events;
- double buffering: two streams, two device buffers; chunk i+1 is uploaded while chunk i is
  processed and downloaded, ordered with ``Stream.wait(event)``.
- ``with stream:`` closes the stream at the end of the block (it does not make it "current":
  every call takes its stream explicitly).
"""

from __future__ import annotations

import os

os.environ.setdefault("ASCEND_SAFE_BACKEND", "sim")
os.environ.setdefault("ASCEND_SAFE_SIM_ASYNC_DELAY", "0.005")

import contextlib
import time

import ascend_safe as asf

CHUNK = 4096
CHUNKS = 8


def snapshot_and_delivery(dev: asf.Device) -> None:
    with dev.stream() as s, dev.malloc(16) as mem:
        src = bytearray(b"original bytes!!")
        mem.copy_from(src, stream=s)  # queued; src is copied into staging memory now
        src[:] = b"changed after q."  # does not affect the copy
        out = bytearray(16)
        mem.copy_to(out, stream=s)  # queued; out is filled once s is known complete
        s.synchronize()
        print("snapshot:", bytes(out))  # b'original bytes!!'


def timed_upload(dev: asf.Device, data: bytes) -> float:
    with dev.stream() as s, dev.malloc(len(data)) as mem, \
            asf.Event(dev) as start, asf.Event(dev) as end:
        start.record(s)
        mem.copy_from(data, stream=s)
        end.record(s)
        end.synchronize()
        return start.elapsed_time(end)


def process(chunk: bytes) -> bytes:
    """What the device does to one chunk (swap its halves, by two device-side copies)."""
    half = len(chunk) // 2
    return chunk[half:] + chunk[:half]


def pipeline(dev: asf.Device, chunks: list[bytes], double: bool) -> tuple[list[bytes], float]:
    """Upload, process and download every chunk, with one buffer pair or two."""
    results = [bytearray(CHUNK) for _ in chunks]
    nbuf = 2 if double else 1
    half = CHUNK // 2
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        up = stack.enter_context(dev.stream())  # uploads
        down = stack.enter_context(dev.stream())  # processing and downloads
        ins = [stack.enter_context(dev.malloc(CHUNK)) for _ in range(nbuf)]
        outs = [stack.enter_context(dev.malloc(CHUNK)) for _ in range(nbuf)]
        uploaded = [stack.enter_context(asf.Event(dev)) for _ in range(nbuf)]
        done = [stack.enter_context(asf.Event(dev)) for _ in range(nbuf)]
        for i, chunk in enumerate(chunks):
            b = i % nbuf
            if i >= nbuf:
                up.wait(done[b])  # buffer b is free again once its previous chunk is out
            ins[b].copy_from(chunk, stream=up)
            uploaded[b].record(up)
            down.wait(uploaded[b])  # process only after the upload
            outs[b].copy_from(ins[b], stream=down, nbytes=half, src_offset=half)
            outs[b].copy_from(ins[b], stream=down, nbytes=half, offset=half)
            outs[b].copy_to(results[i], stream=down)
            done[b].record(down)
            if not double:
                down.synchronize()
        down.synchronize()  # every download is delivered into results now
    return [bytes(r) for r in results], time.perf_counter() - t0


def main() -> None:
    with asf.Device(0) as dev:
        snapshot_and_delivery(dev)
        ms = timed_upload(dev, bytes(1 << 20))
        print(f"event timing: 1 MiB upload took {ms:.3f} ms (device clock)")

        chunks = [bytes([i]) * (CHUNK // 2) + bytes(range(256)) * (CHUNK // 512)
                  for i in range(CHUNKS)]
        single, t_single = pipeline(dev, chunks, double=False)
        double, t_double = pipeline(dev, chunks, double=True)
        assert single == double == [process(c) for c in chunks]
        print(f"single buffer: {t_single * 1e3:.1f} ms, double buffer: {t_double * 1e3:.1f} ms")
        print("double buffering: results match")

        # `with stream:` closes the stream when the block ends.
        with dev.stream() as s:
            pass
        print("stream closed after its with block:", s.closed)
    print(asf.leak_report())


if __name__ == "__main__":
    main()
