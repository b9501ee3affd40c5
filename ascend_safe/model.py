"""Models: load once, execute many times, unload at close (``acl.mdl``).

A :class:`Model` loads a model file or bytes into a device's (or context's) context, reads its
description as data (:attr:`Model.inputs`, :attr:`Model.outputs`), and allocates zero-filled
device memory for every input and output once, wrapped in data buffers and two datasets, reused
by every call. :meth:`Model.execute` takes numpy arrays or memory objects, checks them against
the description, copies in, executes, copies out, all under one lock per model (CANN requires
callers sharing a model to serialize); with ``stream=`` the same steps are queued on the stream.
Closing the model unloads it first, then releases its datasets, buffers, memory and description.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any, Callable, NamedTuple, Union

from . import _backend, _lifetime, admission
from .buffer import DataBuffer
from .context import ContextOwner, InContext
from .errors import AclError
from .handles import Handle, handle_class
from .memory import DeviceMemory, Memory
from .stream import Stream

__all__ = ["Dataset", "Model", "TensorInfo"]

_OMITTED: Any = object()
#: CANN's name for the extra input that carries the chosen batch or image size.
DYNAMIC_INPUT = "ascend_mbatch_shape_data"
#: aclDataType -> numpy dtype name.
_NUMPY_TYPES = {
    0: "float32",
    1: "float16",
    2: "int8",
    3: "int32",
    4: "uint8",
    6: "int16",
    7: "uint16",
    8: "uint32",
    9: "int64",
    10: "uint64",
    11: "float64",
    12: "bool",
}
_HW_AXES = {0: (2, 3), 1: (1, 2)}  # aclFormat NCHW / NHWC -> (H, W) axes


class TensorInfo(NamedTuple):
    """One model input or output, as the model describes it.

    ``shape`` has ``-1`` for a dimension that depends on the dynamic batch or image size;
    ``size`` is the byte size pyacl reports (the largest one for a dynamic model).
    """

    name: str
    dtype: Any  # numpy.dtype
    shape: tuple[int, ...]
    size: int
    format: int
    data_type: int


class Dataset(Handle):
    """An ``aclmdlDataset`` that owns its data buffers: closing it destroys them first."""

    kind = "dataset"
    pair = handle_class("dataset").pair
    __slots__ = ("_buffers",)

    def __init__(self, owner: ContextOwner, buffers: Sequence[DataBuffer] = ()) -> None:
        self._buffers: list[DataBuffer] = []
        super().__init__(owner)
        try:
            for buffer in buffers:
                self.add(buffer)
        except BaseException:
            self.close()
            raise

    def add(self, buffer: DataBuffer) -> None:
        """Append *buffer* (the dataset now owns it and destroys it when closed)."""
        if not isinstance(buffer, DataBuffer):
            raise TypeError(f"Dataset.add() takes a DataBuffer, not {type(buffer).__name__}")
        handle = self._checked_handle()
        _backend.call("mdl.add_dataset_buffer", handle, buffer.handle, resource=self)
        self._buffers.append(buffer)

    @property
    def buffers(self) -> tuple[DataBuffer, ...]:
        """The data buffers, in order."""
        return tuple(self._buffers)

    def __len__(self) -> int:
        return len(self._buffers)

    def _release(self, handle: Any) -> None:
        _lifetime.call_all([buffer.close for buffer in reversed(self._buffers)])
        super()._release(handle)
        self._buffers = []


class _InternalDataset(Dataset):
    tracked = False
    __slots__ = ()


class _ModelMemory(DeviceMemory):
    """Input or output memory a model owns (released with it, not listed as the user's)."""

    kind = "model memory"
    tracked = False
    __slots__ = ()


class _ModelBuffer(DataBuffer):
    kind = "model data buffer"
    tracked = False
    __slots__ = ()


class _Parts:
    """What a loaded model holds besides its id; released in reverse order."""

    def __init__(self) -> None:
        self.desc: Handle | None = None
        self.memory: list[_ModelMemory] = []
        self.inputs: Dataset | None = None
        self.outputs: Dataset | None = None

    def release(self) -> None:
        calls: list[Callable[[], object]] = [
            d.close for d in (self.outputs, self.inputs) if d is not None
        ]
        calls += [m.close for m in reversed(self.memory)]
        if self.desc is not None:
            calls.append(self.desc.close)
        _lifetime.call_all(calls)


class Model(InContext):
    """A loaded model (``acl.mdl.load_from_file`` / ``load_from_mem``), unloaded at close.

    *source* is a path (str or ``os.PathLike``) or the model's bytes. Needs numpy.
    """

    kind = "model"
    teardown_rank = 1
    __slots__ = (
        "_data_index",
        "_dynamic_batch",
        "_dynamic_hw",
        "_dynamic_index",
        "_inputs",
        "_last_stream",
        "_lock",
        "_outputs",
        "_parts",
        "_source",
        "_unloaded",
    )

    def __init__(
        self, owner: ContextOwner, source: Union[str, os.PathLike[str], bytes, bytearray]
    ) -> None:
        if isinstance(source, (bytes, bytearray)):
            if not source:
                raise ValueError("model bytes are empty")
            data: Any = bytes(source)
            described = f"{len(data)} bytes"
        elif isinstance(source, (str, os.PathLike)):
            data = os.fspath(source)
            described = repr(data)
        else:
            raise TypeError(f"Model() takes a path or bytes, not {type(source).__name__}")
        super().__init__(owner)
        self._source = described
        self._lock = threading.RLock()
        self._last_stream: Stream | None = None
        self._parts = _Parts()
        self._unloaded = False
        self._inputs: tuple[TensorInfo, ...] = ()
        self._outputs: tuple[TensorInfo, ...] = ()
        self._dynamic_batch: tuple[int, ...] = ()
        self._dynamic_hw: tuple[tuple[int, int], ...] = ()
        self._data_index: tuple[int, ...] = ()  # positions of the data inputs among all inputs
        self._dynamic_index: int | None = None  # position of the dynamic-size input
        self._construct(lambda: self._create(data))

    # -- construction -------------------------------------------------------------------------

    def _create(self, data: Any) -> int:
        self._owner.make_current()
        args: tuple[Any, ...]
        if isinstance(data, bytes):
            ptr = _backend.call_value("util.bytes_to_ptr", data)
            api, args, query = "mdl.load_from_mem", (ptr, len(data)), "mdl.query_size_from_mem"
        else:
            api, args, query = "mdl.load_from_file", (data,), "mdl.query_size"

        def load() -> int:
            return int(_backend.call(api, *args, resource=self))

        model_id = self._admitted(load, api, query, args)
        try:
            self._prepare(model_id)
        except BaseException:
            try:
                self._parts.release()
            finally:
                self._owner.make_current()
                _backend.call("mdl.unload", model_id, resource=self)
            raise
        return model_id

    def _admitted(
        self, load: Callable[[], int], api: str, query: str, args: tuple[Any, ...]
    ) -> int:
        """Load through memory admission: the load allocates the model's work and weight
        memory on the device (the sizes ``query_size`` reports), which in RC mode blocks when it
        does not fit, like a malloc."""
        device = self._owner.device
        if not admission.checks(device):
            return load()
        try:
            work, weight = _backend.call(query, *args, resource=self)
        except AclError:
            return load()  # the size is unknown: the load itself reports what is wrong
        need = int(work) + int(weight)
        if need <= 0:
            return load()
        return admission.allocate(api, device, need, load, resource=self, extent=need)

    def _prepare(self, model_id: int) -> None:
        owner = self._owner
        parts = self._parts
        desc = parts.desc = handle_class("model_desc", internal=True)(owner)
        _backend.call("mdl.get_desc", desc.handle, model_id, resource=self)
        n_in = _backend.call_value("mdl.get_num_inputs", desc.handle)
        n_out = _backend.call_value("mdl.get_num_outputs", desc.handle)
        inputs = [self._info(desc.handle, i, output=False) for i in range(n_in)]
        outputs = [self._info(desc.handle, i, output=True) for i in range(n_out)]
        batch = _backend.call("mdl.get_dynamic_batch", desc.handle, resource=self)
        if batch.get("batchCount"):
            self._dynamic_batch = tuple(int(b) for b in batch["batch"])
        hw = _backend.call("mdl.get_dynamic_hw", desc.handle, -1, resource=self)
        if hw.get("hwCount"):
            self._dynamic_hw = tuple((int(h), int(w)) for h, w in hw["hw"])
        datasets = []
        for infos in (inputs, outputs):
            buffers = []
            try:
                for info in infos:
                    memory = _ModelMemory(owner, max(info.size, 1))
                    parts.memory.append(memory)
                    buffers.append(_ModelBuffer(memory, info.size or memory.size))
                datasets.append(_InternalDataset(owner, buffers))
            except BaseException:
                _lifetime.call_all([b.close for b in buffers])
                raise
        parts.inputs, parts.outputs = datasets
        self._data_index = tuple(k for k, i in enumerate(inputs) if i.name != DYNAMIC_INPUT)
        dynamic = [k for k, i in enumerate(inputs) if i.name == DYNAMIC_INPUT]
        self._dynamic_index = dynamic[0] if dynamic else None
        self._inputs = tuple(inputs[k] for k in self._data_index)
        self._outputs = tuple(outputs)

    def _info(self, desc: int, index: int, *, output: bool) -> TensorInfo:
        import numpy as np

        side = "output" if output else "input"
        name = _backend.call_value(f"mdl.get_{side}_name_by_index", desc, index)
        dims = _backend.call(f"mdl.get_{side}_dims", desc, index, resource=self)
        size = _backend.call_value(f"mdl.get_{side}_size_by_index", desc, index)
        data_type = _backend.call_value(f"mdl.get_{side}_data_type", desc, index)
        fmt = _backend.call_value(f"mdl.get_{side}_format", desc, index)
        dtype_name = _NUMPY_TYPES.get(int(data_type))
        if dtype_name is None:
            raise TypeError(
                f"{side} {index} ({name}) of {self!r} has aclDataType {data_type}, which has no "
                "numpy equivalent here"
            )
        shape = tuple(int(d) for d in dims["dims"])
        return TensorInfo(str(name), np.dtype(dtype_name), shape, int(size), int(fmt), data_type)

    # -- description --------------------------------------------------------------------------

    @property
    def inputs(self) -> tuple[TensorInfo, ...]:
        """The data inputs (without CANN's dynamic-size input), in order."""
        self._checked_handle()
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorInfo, ...]:
        """The outputs, in order."""
        self._checked_handle()
        return self._outputs

    @property
    def dynamic_batch(self) -> tuple[int, ...]:
        """Batch sizes the model accepts (empty unless it has a dynamic batch)."""
        return self._dynamic_batch

    @property
    def dynamic_hw(self) -> tuple[tuple[int, int], ...]:
        """``(height, width)`` image sizes the model accepts (empty unless dynamic)."""
        return self._dynamic_hw

    @property
    def id(self) -> int:
        """pyacl's model id (raises once closed)."""
        model_id: int = self._checked_handle()
        return model_id

    # -- execution ----------------------------------------------------------------------------

    def execute(
        self,
        inputs: Any,
        *,
        stream: Stream = _OMITTED,
        outputs: Sequence[Memory] | None = None,
        batch_size: int | None = None,
        hw: tuple[int, int] | None = None,
    ) -> list[Any]:
        """Run the model on *inputs* (a sequence of numpy arrays or memory objects, one per
        input; a single array for a one-input model) and return the outputs.

        Returns numpy arrays, or *outputs* (memory objects to write into) when given. With
        *stream*, the work is queued (``acl.mdl.execute_async``) and the returned arrays are
        filled once the stream's work completes: synchronize the stream (or an event recorded
        after it) before reading them. *batch_size* / *hw* pick the dynamic batch or image size
        (by default taken from the inputs' shapes).
        """
        import numpy as np

        model_id = self._checked_handle()
        stream_obj = _stream_arg(stream)
        items = self._input_list(inputs, np)
        gear = self._gear(items, batch_size, hw)
        shapes = [self._concrete(info.shape, gear, info.format) for info in self._inputs]
        needs = [
            self._check_input(info, item, shape, np)
            for info, item, shape in zip(self._inputs, items, shapes)
        ]
        out_shapes = [self._concrete(info.shape, gear, info.format) for info in self._outputs]
        if outputs is not None:
            outputs = self._check_outputs(outputs)
        elif stream_obj is not None and any(-1 in s for s in out_shapes):
            raise ValueError(
                f"{self!r}: an output's shape is only known after the run; execute without "
                "stream=, or pass output memory with outputs="
            )
        if stream_obj is not None and stream_obj.device.id != self.device.id:
            raise ValueError(f"{stream_obj!r} is not on the device of {self!r}")
        parts = self._parts
        assert parts.inputs is not None and parts.outputs is not None
        with self._lock:
            self._wait_other_stream(stream_obj)
            in_mem = [parts.memory[k] for k in self._data_index]
            out_mem = parts.memory[len(parts.inputs) :]
            for memory, item, need in zip(in_mem, items, needs):
                if stream_obj is None:
                    memory.copy_from(item, nbytes=need)
                else:
                    memory.copy_from(item, nbytes=need, stream=stream_obj)
            if gear is not None:
                self._set_gear(model_id, gear)
            in_handle = parts.inputs.handle
            out_handle = parts.outputs.handle
            if stream_obj is None:
                self._owner.make_current()
                _backend.call("mdl.execute", model_id, in_handle, out_handle, resource=self)
                if any(-1 in s for s in out_shapes):
                    out_shapes = [self._current_shape(k) for k in range(len(self._outputs))]
            else:
                stream_obj._submit(
                    "mdl.execute_async",
                    model_id,
                    in_handle,
                    out_handle,
                    keepalive=(self, parts.inputs, parts.outputs, *parts.memory),
                )
                self._last_stream = stream_obj
            return self._collect(out_mem, out_shapes, outputs, stream_obj, np)

    def _input_list(self, inputs: Any, np: Any) -> list[Any]:
        if isinstance(inputs, (np.ndarray, Memory)):
            inputs = [inputs]
        if not isinstance(inputs, Sequence) or isinstance(inputs, (str, bytes)):
            raise TypeError(
                f"inputs must be a sequence of numpy arrays or memory objects, not "
                f"{type(inputs).__name__}"
            )
        names = ", ".join(i.name for i in self._inputs)
        if len(inputs) != len(self._inputs):
            raise ValueError(
                f"{self!r} takes {len(self._inputs)} input(s) ({names}), got {len(inputs)}"
            )
        return list(inputs)

    def _gear(
        self, items: list[Any], batch_size: int | None, hw: tuple[int, int] | None
    ) -> tuple[int, ...] | None:
        if self._dynamic_batch:
            if hw is not None:
                raise ValueError(f"{self!r} has a dynamic batch size, not a dynamic image size")
            if batch_size is None:
                batch_size = self._infer(items, lambda s: s[0], "batch_size")
            if batch_size not in self._dynamic_batch:
                raise ValueError(
                    f"batch size {batch_size} is not one of {list(self._dynamic_batch)} that "
                    f"{self!r} accepts"
                )
            return (batch_size,)
        if self._dynamic_hw:
            if batch_size is not None:
                raise ValueError(f"{self!r} has a dynamic image size, not a dynamic batch size")
            if hw is None:
                axes = _HW_AXES.get(self._inputs[0].format, (2, 3))
                hw = self._infer(items, lambda s: (s[axes[0]], s[axes[1]]), "hw")
            hw = (int(hw[0]), int(hw[1]))
            if hw not in self._dynamic_hw:
                raise ValueError(
                    f"image size {hw} is not one of {list(self._dynamic_hw)} that {self!r} accepts"
                )
            return hw
        if batch_size is not None or hw is not None:
            raise ValueError(f"{self!r} has no dynamic batch or image size")
        return None

    def _infer(self, items: list[Any], pick: Any, what: str) -> Any:
        for info, item in zip(self._inputs, items):
            shape = getattr(item, "shape", None)
            if shape is not None and -1 in info.shape and len(shape) == len(info.shape):
                return pick(tuple(shape))
        raise ValueError(f"{self!r} is dynamic: pass {what}= (it cannot be read from the inputs)")

    @staticmethod
    def _concrete(
        shape: tuple[int, ...], gear: tuple[int, ...] | None, fmt: int
    ) -> tuple[int, ...]:
        if gear is None:
            return shape
        out = list(shape)
        if len(gear) == 1:
            if out and out[0] == -1:
                out[0] = gear[0]
        else:
            for axis, value in zip(_HW_AXES.get(fmt, (2, 3)), gear):
                if axis < len(out) and out[axis] == -1:
                    out[axis] = value
        return tuple(out)

    def _check_input(self, info: TensorInfo, item: Any, shape: tuple[int, ...], np: Any) -> int:
        """Bytes to copy for *item*, after checking it against *info* (errors name it)."""
        need: int = int(np.prod(shape, dtype=np.int64)) * int(info.dtype.itemsize)
        if isinstance(item, Memory):
            if item.closed:
                raise ValueError(f"input {info.name!r}: {item!r} is closed")
            if item.device.id != self.device.id:
                raise ValueError(
                    f"input {info.name!r}: {item!r} is on device {item.device.id}, {self!r} on "
                    f"device {self.device.id}"
                )
            if item.size < need:
                raise ValueError(
                    f"input {info.name!r} needs {need} bytes ({list(shape)} {info.dtype}); "
                    f"{item!r} holds {item.size}"
                )
            return need
        if not isinstance(item, np.ndarray):
            raise TypeError(
                f"input {info.name!r} must be a numpy array or a memory object, not "
                f"{type(item).__name__}"
            )
        if item.dtype != info.dtype:
            raise TypeError(
                f"input {info.name!r} must have dtype {info.dtype}, got {item.dtype}; convert "
                f"with .astype({str(info.dtype)!r})"
            )
        if tuple(item.shape) != shape:
            raise ValueError(
                f"input {info.name!r} must have shape {list(shape)}, got {list(item.shape)}"
            )
        return need

    def _check_outputs(self, outputs: Sequence[Memory]) -> list[Memory]:
        if len(outputs) != len(self._outputs):
            raise ValueError(
                f"{self!r} has {len(self._outputs)} output(s), got {len(outputs)} output memories"
            )
        for info, memory in zip(self._outputs, outputs):
            if not isinstance(memory, Memory):
                raise TypeError(
                    f"output {info.name!r} must be a memory object, not {type(memory).__name__}"
                )
            if memory.size < info.size:
                raise ValueError(
                    f"output {info.name!r} needs {info.size} bytes; {memory!r} holds {memory.size}"
                )
        return list(outputs)

    def _wait_other_stream(self, stream: Stream | None) -> None:
        """The model's memory is reused: let work queued on another stream finish first."""
        last = self._last_stream
        if last is not None and last is not stream and not last.closed:
            last._drain_if_busy()
        if stream is None:
            self._last_stream = None

    def _set_gear(self, model_id: int, gear: tuple[int, ...]) -> None:
        parts = self._parts
        assert parts.inputs is not None
        last = self._last_stream
        if last is not None and not last.closed:
            last._drain_if_busy()  # the size is written at once; queued runs must read theirs
        index = self._dynamic_index
        if index is None:
            raise ValueError(f"{self!r} has no {DYNAMIC_INPUT!r} input to set its size in")
        self._owner.make_current()
        if len(gear) == 1:
            _backend.call(
                "mdl.set_dynamic_batch_size",
                model_id,
                parts.inputs.handle,
                index,
                gear[0],
                resource=self,
            )
        else:
            _backend.call(
                "mdl.set_dynamic_hw_size",
                model_id,
                parts.inputs.handle,
                index,
                gear[0],
                gear[1],
                resource=self,
            )

    def _current_shape(self, index: int) -> tuple[int, ...]:
        desc = self._parts.desc
        assert desc is not None
        dims = _backend.call("mdl.get_cur_output_dims", desc.handle, index, resource=self)
        return tuple(int(d) for d in dims["dims"])

    def _collect(
        self,
        out_mem: list[_ModelMemory],
        shapes: list[tuple[int, ...]],
        outputs: list[Memory] | None,
        stream: Stream | None,
        np: Any,
    ) -> list[Any]:
        if outputs is not None:
            for memory, target, info in zip(out_mem, outputs, self._outputs):
                if stream is None:
                    target.copy_from(memory, nbytes=info.size)
                else:
                    target.copy_from(memory, nbytes=info.size, stream=stream)
            return outputs
        arrays = []
        for memory, shape, info in zip(out_mem, shapes, self._outputs):
            array = np.zeros(shape, dtype=info.dtype)
            if stream is None:
                memory.copy_to(array, nbytes=array.nbytes)
            else:
                memory.copy_to(array, nbytes=array.nbytes, stream=stream)
            arrays.append(array)
        return arrays

    # -- teardown -----------------------------------------------------------------------------

    def _release(self, handle: Any) -> None:
        with self._lock:
            last = self._last_stream
            if last is not None and not last.closed:
                last._drain_if_busy()
            if not self._unloaded:  # a retried close (a part failed to release) skips this
                self._owner.make_current()
                _backend.call("mdl.unload", handle, resource=self)
                self._unloaded = True
            self._last_stream = None
            self._parts.release()

    def _describe(self) -> str:
        return f" device={self._owner.device.id} source={self._source}"


def _stream_arg(stream: object) -> Stream | None:
    if stream is _OMITTED:
        return None
    if not isinstance(stream, Stream):
        raise TypeError(
            f"stream must be a Stream, not {type(stream).__name__}: omit it to execute "
            "synchronously, or pass device.default_stream explicitly"
        )
    return stream
