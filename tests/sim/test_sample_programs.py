"""Programs written the way the official samples and their helper library are written run
unchanged on the simulator: ``sim.install()``, then plain ``import acl``.

Each program here follows a call sequence found in the Ascend samples (``python/`` tree): the
resource class that inits, sets the device, creates a context and a stream and tears them down in
its destructor; a logger over ``acl.app_log``; copy helpers over ``malloc_host``/``memcpy``; a
report thread started with ``acl.util.start_thread`` that serves host callbacks queued with
``launch_callback``; a worker thread that sets the context it is given.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ascend_safe import sim

ACL_SUCCESS = 0
ACL_ERROR = 3
ACL_WARNING = 2
ACL_INFO = 1
ACL_DEBUG = 0
ACL_MEM_MALLOC_NORMAL_ONLY = 2
ACL_MEMCPY_HOST_TO_DEVICE = 1
ACL_MEMCPY_DEVICE_TO_HOST = 2
ACL_CALLBACK_BLOCK = 1
ACL_HOST = 1
DEVICE_ID = 0


@pytest.fixture(autouse=True)
def _installed() -> Iterator[None]:
    sim.install()
    yield
    sim.uninstall()


def check_ret(message: str, ret: int) -> None:
    if ret != ACL_SUCCESS:
        raise Exception(f"{message} failed ret={ret}")


# ---------------------------------------------------------------- a logger like the samples'


def _log(level: int, *parts: object) -> None:
    import acl

    caller = sys._getframe(2)
    text = "".join(str(p) for p in parts)
    where = f"{caller.f_code.co_filename}:{caller.f_lineno} {caller.f_code.co_name}"
    acl.app_log(level, f"[{where}]{text}")


def log_error(*parts: object) -> None:
    _log(ACL_ERROR, *parts)


def log_info(*parts: object) -> None:
    _log(ACL_INFO, *parts)


# ---------------------------------------------------------------- a resource class


class Resource:
    """Init in ``init``; release in the samples' order: stream, context, device, finalize."""

    def __init__(self, device_id: int = DEVICE_ID) -> None:
        self.device_id = device_id
        self.context = 0
        self.stream = 0
        self.run_mode = -1

    def init(self) -> None:
        import acl

        check_ret("acl.init", acl.init())
        check_ret("acl.rt.set_device", acl.rt.set_device(self.device_id))
        self.context, ret = acl.rt.create_context(self.device_id)
        check_ret("acl.rt.create_context", ret)
        self.stream, ret = acl.rt.create_stream()
        check_ret("acl.rt.create_stream", ret)
        self.run_mode, ret = acl.rt.get_run_mode()
        check_ret("acl.rt.get_run_mode", ret)
        log_info("init resource success")

    def release(self) -> None:
        import acl

        if self.stream:
            check_ret("acl.rt.destroy_stream", acl.rt.destroy_stream(self.stream))
            self.stream = 0
        if self.context:
            check_ret("acl.rt.destroy_context", acl.rt.destroy_context(self.context))
            self.context = 0
        check_ret("acl.rt.reset_device", acl.rt.reset_device(self.device_id))
        check_ret("acl.finalize", acl.finalize())
        log_info("release resource success")


def copy_host_to_device(host_ptr: int, size: int) -> int:
    import acl

    device_ptr, ret = acl.rt.malloc(size, ACL_MEM_MALLOC_NORMAL_ONLY)
    check_ret("acl.rt.malloc", ret)
    ret = acl.rt.memcpy(device_ptr, size, host_ptr, size, ACL_MEMCPY_HOST_TO_DEVICE)
    if ret != ACL_SUCCESS:
        log_error("copy host data to device failed, error: ", ret)
        acl.rt.free(device_ptr)
        raise Exception("copy failed")
    return int(device_ptr)


def copy_device_to_host(device_ptr: int, size: int) -> int:
    import acl

    host_ptr, ret = acl.rt.malloc_host(size)
    check_ret("acl.rt.malloc_host", ret)
    ret = acl.rt.memcpy(host_ptr, size, device_ptr, size, ACL_MEMCPY_DEVICE_TO_HOST)
    if ret != ACL_SUCCESS:
        log_error("copy device data to host failed, error: ", ret)
        acl.rt.free_host(host_ptr)
        raise Exception("copy failed")
    return int(host_ptr)


# ---------------------------------------------------------------- programs


def test_resource_lifecycle_with_copies_and_logging(caplog: pytest.LogCaptureFixture) -> None:
    import acl

    caplog.set_level(logging.DEBUG, logger="ascend_safe.sim.app_log")
    resource = Resource()
    resource.init()
    assert resource.run_mode == ACL_HOST
    payload = bytes(range(256)) * 8
    device_ptr = copy_host_to_device(acl.util.bytes_to_ptr(payload), len(payload))
    host_ptr = copy_device_to_host(device_ptr, len(payload))
    result = acl.util.ptr_to_bytes(host_ptr, len(payload))
    check_ret("acl.rt.free", acl.rt.free(device_ptr))
    check_ret("acl.rt.free_host", acl.rt.free_host(host_ptr))
    resource.release()

    assert result == payload
    assert sim.live_handles() == {}
    assert sim.violations() == []
    records = [r for r in caplog.records if r.name == "ascend_safe.sim.app_log"]
    assert [r.levelno for r in records] == [logging.INFO, logging.INFO]
    assert records[0].getMessage().endswith(" init]init resource success")
    assert "test_sample_programs.py" in records[0].getMessage()


def test_failure_is_logged_through_app_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ascend_safe.sim.app_log")
    resource = Resource()
    resource.init()
    bogus_host = 0x10  # a pointer nothing owns: memcpy refuses it
    with pytest.raises(Exception, match="copy failed"):
        copy_host_to_device(bogus_host, 64)
    resource.release()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "copy host data to device failed, error: 107000" in errors[0].getMessage()
    assert sim.live_handles() == {}


class AsyncNet:
    """Batches copied to the device, each followed by a blocking host callback that reads the
    results back; a report thread started with ``acl.util.start_thread`` serves the callbacks."""

    def __init__(self, resource: Resource, batches: list[bytes]) -> None:
        self.resource = resource
        self.batches = batches
        self.exit_flag = False
        self.results: list[bytes] = []
        self.callback_threads: set[int] = set()
        self.device_buffers: list[int] = []

    def _process_callback(self, args_list: list[Any]) -> None:
        import acl

        context, timeout = args_list
        acl.rt.set_context(context)
        while not self.exit_flag:
            acl.rt.process_report(timeout)

    def callback_func(self, work: list[tuple[int, int]]) -> None:
        import acl

        self.callback_threads.add(threading.get_ident())
        for device_ptr, size in work:
            host_ptr = copy_device_to_host(device_ptr, size)
            self.results.append(acl.util.ptr_to_bytes(host_ptr, size))
            check_ret("acl.rt.free_host", acl.rt.free_host(host_ptr))

    def forward(self) -> None:
        import acl

        stream = self.resource.stream
        for batch in self.batches:
            size = len(batch)
            host_ptr, ret = acl.rt.malloc_host(size)
            check_ret("acl.rt.malloc_host", ret)
            ctypes.memmove(host_ptr, batch, size)
            device_ptr, ret = acl.rt.malloc(size, ACL_MEM_MALLOC_NORMAL_ONLY)
            check_ret("acl.rt.malloc", ret)
            self.device_buffers.append(device_ptr)
            ret = acl.rt.memcpy_async(
                device_ptr, size, host_ptr, size, ACL_MEMCPY_HOST_TO_DEVICE, stream
            )
            check_ret("acl.rt.memcpy_async", ret)
            ret = acl.rt.launch_callback(
                self.callback_func, [(device_ptr, size)], ACL_CALLBACK_BLOCK, stream
            )
            check_ret("acl.rt.launch_callback", ret)
            # the blocking callback ran before the stream went on: the host block is free to go
            ret = acl.rt.synchronize_stream(stream)
            check_ret("acl.rt.synchronize_stream", ret)
            check_ret("acl.rt.free_host", acl.rt.free_host(host_ptr))

    def run(self) -> int:
        import acl

        tid, ret = acl.util.start_thread(self._process_callback, [self.resource.context, 50])
        check_ret("acl.util.start_thread", ret)
        check_ret("acl.rt.subscribe_report", acl.rt.subscribe_report(tid, self.resource.stream))
        self.forward()
        check_ret("acl.rt.synchronize_stream", acl.rt.synchronize_stream(self.resource.stream))
        check_ret(
            "acl.rt.unsubscribe_report", acl.rt.unsubscribe_report(tid, self.resource.stream)
        )
        self.exit_flag = True
        check_ret("acl.util.stop_thread", acl.util.stop_thread(tid))
        for device_ptr in self.device_buffers:
            check_ret("acl.rt.free", acl.rt.free(device_ptr))
        return int(tid)


def test_async_program_with_report_thread_and_callbacks() -> None:
    sim.configure(async_delay=0.001)
    resource = Resource()
    resource.init()
    batches = [bytes([i]) * (1024 + 64 * i) for i in range(4)]
    net = AsyncNet(resource, batches)
    tid = net.run()
    assert sim.live_handles() != {}  # still set up: the resource is released last
    resource.release()

    assert net.results == batches
    assert net.callback_threads == {tid}  # callbacks ran on the report thread
    assert sim.live_handles() == {}
    assert sim.violations() == []
    counts = sim.call_counts()
    assert counts["rt.launch_callback"] == 4
    assert counts["rt.process_report"] >= 4


class Worker:
    """A worker thread like the helper library's decoder: it sets the context it is given,
    reports readiness through a status field, and is joined with ``stop_thread``."""

    def __init__(self, context: int) -> None:
        self.context = context
        self.status = "init"
        self.copied = b""
        self.thread_id = 0

    def _entry(self, args_list: list[Any]) -> None:
        import acl

        assert args_list == []
        check_ret("acl.rt.set_context", acl.rt.set_context(self.context))
        self.status = "ready"
        payload = b"frame" * 100
        device_ptr = copy_host_to_device(acl.util.bytes_to_ptr(payload), len(payload))
        host_ptr = copy_device_to_host(device_ptr, len(payload))
        self.copied = acl.util.ptr_to_bytes(host_ptr, len(payload))
        acl.rt.free(device_ptr)
        acl.rt.free_host(host_ptr)

    def open(self) -> bool:
        import acl

        self.thread_id, ret = acl.util.start_thread(self._entry, [])
        if ret:
            log_error("create worker thread failed, error ", ret)
            return False
        for _ in range(200):
            if self.status != "init":
                break
            time.sleep(0.005)
        return self.status == "ready"

    def join(self) -> None:
        import acl

        check_ret("acl.util.stop_thread", acl.util.stop_thread(self.thread_id))


def test_worker_thread_started_and_joined() -> None:
    resource = Resource()
    resource.init()
    worker = Worker(resource.context)
    assert worker.open()
    assert sim.live_handles()["thread"] == [worker.thread_id]
    worker.join()
    assert "thread" not in sim.live_handles()
    resource.release()
    assert worker.copied == b"frame" * 100
    assert sim.live_handles() == {}
    assert sim.violations() == []


def test_run_mode_queried_at_import_before_init() -> None:
    import acl

    # the helper library's image module asks for the run mode when it is imported
    run_mode, ret = acl.rt.get_run_mode()
    check_ret("acl.rt.get_run_mode", ret)
    resource = Resource()
    resource.init()
    assert run_mode == resource.run_mode
    resource.release()
    assert sim.live_handles() == {}


def test_pageable_async_copies() -> None:
    import acl

    resource = Resource()
    resource.init()
    size = 4096
    # a frame in ordinary (pageable) host memory; the row copied starts 16 bytes in
    frame = mmap.mmap(-1, 3 * size)
    base = ctypes.addressof(ctypes.c_char.from_buffer(frame))
    source = base + 16
    ctypes.memmove(source, bytes(range(256)) * (size // 256), size)
    device_ptr, ret = acl.rt.malloc(size, ACL_MEM_MALLOC_NORMAL_ONLY)
    check_ret("acl.rt.malloc", ret)
    ret = acl.rt.memcpy_async(
        device_ptr, size, source, size, ACL_MEMCPY_HOST_TO_DEVICE, resource.stream
    )
    check_ret("acl.rt.memcpy_async", ret)
    target = base + size + 16
    ret = acl.rt.memcpy_async(
        target, size, device_ptr, size, ACL_MEMCPY_DEVICE_TO_HOST, resource.stream
    )
    check_ret("acl.rt.memcpy_async", ret)
    check_ret("acl.rt.synchronize_stream", acl.rt.synchronize_stream(resource.stream))
    assert ctypes.string_at(target, size) == bytes(range(256)) * (size // 256)
    check_ret("acl.rt.free", acl.rt.free(device_ptr))
    resource.release()
    del base, source, target
    frame.close()
    assert sim.live_handles() == {}
