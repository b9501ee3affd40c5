"""The port of ``raw_copy_pipeline.py`` to ascend_safe: the same upload, device copy and
download.

Runs on the built-in simulator unless ASCEND_SAFE_BACKEND says otherwise.

What changes, point by point against the raw program's list:
1. every object is a ``with`` block: an error anywhere closes what was opened, children first,
   and the device session resets the device and finalizes pyacl;
2. allocations are zero-filled;
3. async copies take ordinary Python buffers (staged through page-locked memory by the
   library; the source is snapshotted when the copy is queued), and the destination buffer is
   filled when the stream is synchronized; memory is not freed before its stream is drained;
4. a closed stream raises ``ResourceClosedError``; there is no integer to reuse, and the default
   stream is an explicit object (``dev.default_stream``), never ``0`` or ``None``;
5. teardown order and return codes are the library's job; a failing pyacl call raises an
   ``AclError`` naming the call, the code and its meaning.
"""

from __future__ import annotations

import os

os.environ.setdefault("ASCEND_SAFE_BACKEND", "sim")

import ascend_safe as asf

SIZE = 4096


def main() -> None:
    batch = bytes(range(256)) * (SIZE // 256)
    # The raw program's explicit context; the device's default one would do as well
    # (dev.stream(), dev.malloc(SIZE)).
    with asf.Device(0) as dev, dev.context() as ctx, asf.Stream(ctx) as stream, \
            asf.DeviceMemory(ctx, SIZE) as dev_in, asf.DeviceMemory(ctx, SIZE) as dev_out:
        dev_in.copy_from(batch, stream=stream)
        dev_out.copy_from(dev_in, stream=stream)
        result = bytearray(SIZE)
        dev_out.copy_to(result, stream=stream)
        stream.synchronize()
        assert result == batch
        print("round trip ok:", len(result), "bytes")
    try:
        stream.synchronize()
    except asf.ResourceClosedError as err:
        print("after close:", err)
    print(asf.leak_report())


if __name__ == "__main__":
    main()
