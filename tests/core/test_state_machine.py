"""Random create/use/close/drop/collect/thread-hop sequences keep the simulator and the library
in agreement and never produce a violation."""

from __future__ import annotations

import gc
import warnings

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from threadhop import in_other_thread

import ascend_safe as asf
from ascend_safe import _runtime, sim
from ascend_safe.memory import StagingMemory

SIM_KIND = {
    asf.Device: "device",
    asf.Context: "context",
    asf.Stream: "stream",
    asf.Event: "event",
    asf.DeviceMemory: "device_memory",
    asf.HostMemory: "host_memory",
    asf.DvppMemory: "dvpp_memory",
    StagingMemory: "host_memory",
    asf.DataBuffer: "data_buffer",
}


def _library_view() -> dict[str, list[int]]:
    view: dict[str, list[int]] = {}
    for r in asf.live_resources(internal=True):
        if isinstance(r, asf.DefaultStream):
            continue  # pyacl's own, not a handle the simulator lists
        kind = SIM_KIND[type(r)]
        if isinstance(r, asf.Device):
            key = r.id
        elif isinstance(r, (asf.DeviceMemory, asf.HostMemory, asf.DvppMemory)):
            key = r.ptr
        else:
            key = r.handle
        view.setdefault(kind, []).append(key)
    # several sessions on one device share pyacl's per-device state
    return {k: sorted(set(v)) if k == "device" else sorted(v) for k, v in view.items()}


class Lifetimes(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        sim.reset()
        _runtime.forget_initialization()
        warnings.simplefilter("ignore", ResourceWarning)
        self.objects: list[asf.Resource] = []

    def _open(self, cls):
        return [o for o in self.objects if isinstance(o, cls) and not o.closed]

    @rule(device_id=st.integers(0, 1))
    def open_device(self, device_id):
        self.objects.append(asf.Device(device_id))

    @precondition(lambda self: self._open(asf.Device))
    @rule(data=st.data(), kind=st.sampled_from(["stream", "event", "mem", "host", "dvpp", "ctx"]))
    def create(self, data, kind):
        owners = self._open(asf.Device) + self._open(asf.Context)
        owner = data.draw(st.sampled_from(owners))
        if kind == "ctx":
            if not isinstance(owner, asf.Device):
                return
            obj = asf.Context(owner)
        elif kind == "stream":
            obj = asf.Stream(owner)
        elif kind == "event":
            obj = asf.Event(owner)
        elif kind == "mem":
            obj = asf.DeviceMemory(owner, data.draw(st.integers(1, 4096)))
        elif kind == "host":
            obj = asf.HostMemory(owner, data.draw(st.integers(1, 4096)))
        else:
            obj = asf.DvppMemory(owner, data.draw(st.integers(1, 4096)))
        self.objects.append(obj)

    @precondition(lambda self: self._open(asf.Memory))
    @rule(data=st.data())
    def wrap_buffer(self, data):
        mem = data.draw(st.sampled_from(self._open(asf.Memory)))
        self.objects.append(asf.DataBuffer(mem))

    @precondition(lambda self: self._open(asf.Memory))
    @rule(data=st.data(), hop=st.booleans(), use_stream=st.booleans())
    def copy_round_trip(self, data, hop, use_stream):
        mem = data.draw(st.sampled_from(self._open(asf.Memory)))
        streams = [s for s in self._open(asf.Stream) if s.device.id == mem.device.id]
        stream = data.draw(st.sampled_from(streams)) if streams and use_stream else None
        payload = data.draw(st.binary(min_size=1, max_size=mem.size))

        def go():
            if stream is not None and mem.on_device:
                mem.copy_from(payload, stream=stream)
                out = bytearray(len(payload))
                mem.copy_to(out, stream=stream, nbytes=len(payload))
                stream.synchronize()
            else:
                mem.copy_from(payload)
                out = bytearray(mem.to_bytes(len(payload)))
            assert bytes(out) == payload

        in_other_thread(go) if hop else go()

    @precondition(lambda self: self._open(asf.Event))
    @rule(data=st.data())
    def record_and_sync(self, data):
        ev = data.draw(st.sampled_from(self._open(asf.Event)))
        streams = [s for s in self._open(asf.Stream) if s.device.id == ev.device.id]
        if streams:
            ev.record(data.draw(st.sampled_from(streams)))
        else:
            ev.record()
        ev.synchronize()
        assert ev.query()

    @precondition(lambda self: any(not o.closed for o in self.objects))
    @rule(data=st.data(), hop=st.booleans())
    def close_one(self, data, hop):
        obj = data.draw(st.sampled_from([o for o in self.objects if not o.closed]))
        in_other_thread(obj.close) if hop else obj.close()
        assert obj.closed

    @precondition(lambda self: self.objects)
    @rule(data=st.data())
    def drop_reference(self, data):
        obj = data.draw(st.sampled_from(self.objects))
        self.objects.remove(obj)
        del obj
        gc.collect()

    @invariant()
    def simulator_agrees(self):
        assert _library_view() == sim.live_handles()
        assert sim.violations() == []

    def teardown(self):
        for obj in asf.live_resources()[::-1]:
            obj.close()
        self.objects.clear()
        gc.collect()
        asf.live_resources()
        assert sim.live_handles() == {}
        assert sim.violations() == []
        sim.reset()
        _runtime.forget_initialization()


TestLifetimes = Lifetimes.TestCase
TestLifetimes.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
