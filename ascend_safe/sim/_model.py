"""Models, model descriptions and datasets (pyACL ``mdl/mdl_wrap.cpp``).

A model is loaded from the simulator's own file format (``_model_file``) into the current
context, charged to its device's memory like an allocation (the machine-wide budget every
process shares; in RC mode a load that does not fit blocks, like ``rt.malloc``), and executed
with numpy on the real bytes of the dataset's buffers. As in the runtime
(``src/runtime/api/impl/api_impl.cc``: ModelExecute, ModelExecuteAsync, ModelDestroy check
``mdl->Context_() != curCtx``), executing or unloading a model from a context other than the
one it was loaded in returns 107004.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from typing import Any, Optional

from . import _model_file
from ._alloc import Alloc
from ._codes import INVALID_PARAM, RT_PARAM_INVALID
from ._core import Fail
from ._memory import MemoryDomain
from ._model_file import GE_LOAD_MODEL, GE_PARAM_INVALID, ModelFileError, ModelSpec
from ._objects import Context, Record, Task

__all__ = ["ModelDomain"]

#: GE / runtime codes for model calls (pyacl-api.md section 13).
GE_EXEC_MODEL_PATH_INVALID = 145002
GE_EXEC_MODEL_ID_INVALID = 145003
RT_MODEL_CONTEXT = 107004
RT_STREAM_CONTEXT = 107003
RT_MODEL_EXECUTE = 507011
_UNDEFINED = -1  # ACL_DT_UNDEFINED / ACL_FORMAT_UNDEFINED


class LoadedModel:
    """A loaded model: its spec, the context it was loaded in, memory it holds or uses."""

    def __init__(self, model_id: int, spec: ModelSpec, context: Context, charged: int) -> None:
        self.id = model_id
        self.spec = spec
        self.context = context
        self.device = context.device
        self.charged = charged  # device bytes charged to the budget (0 with caller memory)
        self.caller_memory: tuple[Alloc, ...] = ()
        self.last_shapes: Optional[list[tuple[int, ...]]] = None


class ModelDesc:
    """An ``aclmdlDesc``: empty until ``get_desc`` fills it from a loaded model."""

    __slots__ = ("handle", "model")

    def __init__(self, handle: int) -> None:
        self.handle = handle
        self.model: Optional[LoadedModel] = None


class Dataset:
    """An ``aclmdlDataset``: an ordered list of data buffer handles (it owns none of them)."""

    __slots__ = ("buffers", "handle")

    def __init__(self, handle: int) -> None:
        self.handle = handle
        self.buffers: list[int] = []


class _Elapse(threading.Event):
    """A gate a stream task waits on: it opens once the model's compute time has passed,
    counted from when the stream reaches the task (so queued executions take turns)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self._seconds = seconds

    def wait(self, timeout: Optional[float] = None) -> bool:
        if not self.is_set():
            time.sleep(self._seconds)
            self.set()
        return True


class _Plan:
    """An execution checked under the lock: model, gear, resolved inputs and outputs."""

    __slots__ = ("allocs", "cost", "gear", "inputs", "model", "outputs")

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.gear: Optional[tuple[int, ...]] = None
        self.inputs: list[tuple[int, tuple[int, ...], str]] = []  # real address, shape, dtype
        self.outputs: list[tuple[int, int]] = []  # real address, capacity
        self.allocs: list[Alloc] = []
        self.cost = 0.0


class ModelDomain(MemoryDomain):
    """Models, model descriptions and datasets (pyACL ``mdl/mdl_wrap.cpp``)."""

    def _init_state(self) -> None:
        super()._init_state()
        self.models: dict[int, LoadedModel] = {}
        self.model_descs: dict[int, ModelDesc] = {}
        self.datasets: dict[int, Dataset] = {}
        self.next_model_id = 0

    def live_handles(self) -> dict[str, list[int]]:
        live = super().live_handles()
        with self.lock:
            for kind, table in (
                ("model", self.models),
                ("model_desc", self.model_descs),
                ("dataset", self.datasets),
            ):
                if table:
                    live[kind] = sorted(table)
        return live

    # ----------------------------------------------------------------- teardown helpers

    def _unload_now(self, model: LoadedModel) -> None:
        self.models.pop(model.id, None)
        self.dead[model.id] = "model"
        if model.charged:
            device = self.devices.get(model.device)
            if device is not None:
                device.used -= model.charged
                self._publish_usage(device)
            self.mem_cond.notify_all()

    def _release_models(self, device: int) -> int:
        """Unload every model of *device* (device reset or finalize); how many there were."""
        models = [m for m in self.models.values() if m.device == device]
        for model in models:
            self._unload_now(model)
        return len(models)

    def _drop_host_objects(self) -> None:
        """At finalize: forget descriptions and datasets (host structures pyacl frees)."""
        for table, kind in ((self.model_descs, "model_desc"), (self.datasets, "dataset")):
            for handle in list(table):
                del table[handle]
                self.dead[handle] = kind

    # ----------------------------------------------------------------- loading

    def _read_file(self, path: str) -> bytes:
        try:
            size = os.path.getsize(path)
            if size > _model_file.MAX_FILE_BYTES:
                raise Fail(GE_LOAD_MODEL, f"model file {path!r} is {size} bytes, over the limit")
            with open(path, "rb") as handle:
                return handle.read(_model_file.MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise Fail(
                GE_EXEC_MODEL_PATH_INVALID,
                f"model file {path!r} cannot be read: {exc.strerror or exc}",
            ) from None

    def _read_mem(self, ptr: int, size: int) -> bytes:
        if ptr == 0 or size == 0:
            raise Fail(GE_PARAM_INVALID, "model data pointer and size must not be 0")
        if size > _model_file.MAX_FILE_BYTES:
            raise Fail(GE_LOAD_MODEL, f"model data of {size} bytes is over the limit")
        real, _ = self._resolve(ptr, size, "model data")
        return ctypes.string_at(real, size)

    def _parse(self, data: bytes, origin: str) -> ModelSpec:
        try:
            return _model_file.parse(data)
        except ModelFileError as exc:
            raise Fail(exc.code, f"cannot load {origin}: {exc.message}") from None

    def _load(self, spec: ModelSpec, memory: Optional[tuple[int, int, int, int]]) -> tuple[int]:
        ctx = self._current()
        device = self._device(ctx.device)
        work = spec.work_bytes()
        weight = spec.weight_bytes
        charged = 0
        caller: list[Alloc] = []
        if memory is None:
            # The runtime allocates the model's work and weight memory itself, from the same
            # device memory as acl.rt.malloc: the machine-wide budget, and in RC mode a load
            # that does not fit blocks like a malloc (the memory domain's _reserve).
            charged = work + weight
            if charged:
                self._reserve(device, "model load", charged, charged)
        else:
            work_ptr, work_size, weight_ptr, weight_size = memory
            for role, ptr, size, need in (
                ("work", work_ptr, work_size, work),
                ("weight", weight_ptr, weight_size, weight),
            ):
                if need == 0 and ptr == 0:
                    continue
                if size < need:
                    raise Fail(
                        GE_PARAM_INVALID,
                        f"{role} memory of {size} bytes is too small: the model needs {need} "
                        "(see acl.mdl.query_size)",
                    )
                _, alloc = self._resolve(ptr, need, f"{role} memory")
                if alloc is None or not alloc.is_device:
                    raise Fail(GE_PARAM_INVALID, f"{role} memory 0x{ptr:x} is not device memory")
                caller.append(alloc)
        self.next_model_id += 1
        model = LoadedModel(self.next_model_id, spec, ctx, charged)
        model.caller_memory = tuple(caller)
        self.models[model.id] = model
        return (model.id,)

    def api_load_from_file(self, path: str) -> tuple[int]:
        self._current()
        return self._load(self._parse(self._read_file(path), f"model file {path!r}"), None)

    def api_load_from_mem(self, ptr: int, size: int) -> tuple[int]:
        self._current()
        return self._load(self._parse(self._read_mem(ptr, size), "model data"), None)

    def api_load_from_file_with_mem(
        self, path: str, work_ptr: int, work_size: int, weight_ptr: int, weight_size: int
    ) -> tuple[int]:
        self._current()
        spec = self._parse(self._read_file(path), f"model file {path!r}")
        return self._load(spec, (work_ptr, work_size, weight_ptr, weight_size))

    def api_load_from_mem_with_mem(
        self,
        ptr: int,
        size: int,
        work_ptr: int,
        work_size: int,
        weight_ptr: int,
        weight_size: int,
    ) -> tuple[int]:
        self._current()
        spec = self._parse(self._read_mem(ptr, size), "model data")
        return self._load(spec, (work_ptr, work_size, weight_ptr, weight_size))

    def api_query_size(self, path: str) -> tuple[int, int]:
        spec = self._parse(self._read_file(path), f"model file {path!r}")
        return (spec.work_bytes(), spec.weight_bytes)

    def api_query_size_from_mem(self, ptr: int, size: int) -> tuple[int, int]:
        spec = self._parse(self._read_mem(ptr, size), "model data")
        return (spec.work_bytes(), spec.weight_bytes)

    def _model(self, model_id: int, destroy: bool = False) -> LoadedModel:
        if model_id == 0:
            raise Fail(GE_EXEC_MODEL_ID_INVALID, "model id 0 was never handed out")
        model = self._lookup(
            self.models, model_id, "model", destroy=destroy, code=GE_EXEC_MODEL_ID_INVALID
        )
        self._check_lost(model.device)
        return model

    def _in_model_context(self, model: LoadedModel, action: str) -> None:
        if self._current() is not model.context:
            raise Fail(
                RT_MODEL_CONTEXT,
                f"{action} model {model.id} from a context other than the one it was loaded "
                "in; set that context first",
            )

    def api_unload(self, model_id: int) -> tuple[()]:
        model = self._model(model_id, destroy=True)
        self._in_model_context(model, "unloading")
        self._unload_now(model)
        return ()

    # ----------------------------------------------------------------- descriptions

    def api_create_desc(self) -> int:
        desc = ModelDesc(self.new_handle())
        self.model_descs[desc.handle] = desc
        return desc.handle

    def api_destroy_desc(self, handle: int) -> tuple[()]:
        desc = self._lookup(
            self.model_descs, handle, "model_desc", destroy=True, code=INVALID_PARAM
        )
        del self.model_descs[desc.handle]
        self.dead[desc.handle] = "model_desc"
        return ()

    def api_get_desc(self, handle: int, model_id: int) -> tuple[()]:
        desc = self._lookup(self.model_descs, handle, "model_desc", code=INVALID_PARAM)
        desc.model = self._model(model_id)
        return ()

    def _filled(self, handle: int) -> LoadedModel:
        desc = self._lookup(self.model_descs, handle, "model_desc", code=INVALID_PARAM)
        if desc.model is None:
            raise Fail(INVALID_PARAM, f"model_desc 0x{handle:x} is empty: call acl.mdl.get_desc")
        return desc.model

    def _quiet(self, fn: Any, default: Any) -> Any:
        """Run a bare-value getter: on failure, set the error text and return *default*."""
        try:
            return fn()
        except Fail as failure:
            self.tls.error = f"acl.{self.tls.api}: {failure.message} (error code {failure.code})"
            return default

    def _tensor(self, handle: int, index: int, output: bool) -> tuple[LoadedModel, int]:
        model = self._filled(handle)
        count = len(model.spec.outputs if output else model.spec.inputs)
        if index >= count:
            role = "output" if output else "input"
            raise Fail(INVALID_PARAM, f"{role} index {index} is out of range 0..{count - 1}")
        return model, index

    def api_get_num_inputs(self, handle: int) -> int:
        return int(self._quiet(lambda: len(self._filled(handle).spec.inputs), 0))

    def api_get_num_outputs(self, handle: int) -> int:
        return int(self._quiet(lambda: len(self._filled(handle).spec.outputs), 0))

    def _size(self, handle: int, index: int, output: bool) -> int:
        model, i = self._tensor(handle, index, output)
        return model.spec.output_sizes[i] if output else model.spec.input_size(i)

    def api_get_input_size_by_index(self, handle: int, index: int) -> int:
        return int(self._quiet(lambda: self._size(handle, index, False), 0))

    def api_get_output_size_by_index(self, handle: int, index: int) -> int:
        return int(self._quiet(lambda: self._size(handle, index, True), 0))

    def _dims(self, handle: int, index: int, output: bool, current: bool = False) -> dict[str, Any]:
        model, i = self._tensor(handle, index, output)
        spec = (model.spec.outputs if output else model.spec.inputs)[i]
        dims = list(spec.shape)
        if current and model.last_shapes is not None:
            dims = list(model.last_shapes[i])
        return {"name": spec.name, "dimCount": len(dims), "dims": dims}

    def api_get_input_dims(self, handle: int, index: int) -> tuple[dict[str, Any]]:
        return (self._dims(handle, index, False),)

    def api_get_output_dims(self, handle: int, index: int) -> tuple[dict[str, Any]]:
        return (self._dims(handle, index, True),)

    def api_get_cur_output_dims(self, handle: int, index: int) -> tuple[dict[str, Any]]:
        return (self._dims(handle, index, True, current=True),)

    def _attr(self, handle: int, index: int, output: bool, attr: str) -> Any:
        model, i = self._tensor(handle, index, output)
        spec = (model.spec.outputs if output else model.spec.inputs)[i]
        return getattr(spec, attr)

    def api_get_input_data_type(self, handle: int, index: int) -> int:
        return int(self._quiet(lambda: self._attr(handle, index, False, "acl_dtype"), _UNDEFINED))

    def api_get_output_data_type(self, handle: int, index: int) -> int:
        return int(self._quiet(lambda: self._attr(handle, index, True, "acl_dtype"), _UNDEFINED))

    def api_get_input_format(self, handle: int, index: int) -> int:
        return int(self._quiet(lambda: self._attr(handle, index, False, "format"), _UNDEFINED))

    def api_get_output_format(self, handle: int, index: int) -> int:
        return int(self._quiet(lambda: self._attr(handle, index, True, "format"), _UNDEFINED))

    def api_get_input_name_by_index(self, handle: int, index: int) -> Optional[str]:
        name: Optional[str] = self._quiet(lambda: self._attr(handle, index, False, "name"), None)
        return name

    def api_get_output_name_by_index(self, handle: int, index: int) -> Optional[str]:
        name: Optional[str] = self._quiet(lambda: self._attr(handle, index, True, "name"), None)
        return name

    def _index_by_name(self, handle: int, name: str, output: bool) -> tuple[int]:
        model = self._filled(handle)
        tensors = model.spec.outputs if output else model.spec.inputs
        for i, spec in enumerate(tensors):
            if spec.name == name:
                return (i,)
        role = "output" if output else "input"
        raise Fail(INVALID_PARAM, f"the model has no {role} named {name!r}")

    def api_get_input_index_by_name(self, handle: int, name: str) -> tuple[int]:
        return self._index_by_name(handle, name, False)

    def api_get_output_index_by_name(self, handle: int, name: str) -> tuple[int]:
        return self._index_by_name(handle, name, True)

    def api_get_dynamic_batch(self, handle: int) -> tuple[dict[str, Any]]:
        batches = list(self._filled(handle).spec.batches)
        return ({"batchCount": len(batches), "batch": batches},)

    def api_get_dynamic_hw(self, handle: int, index: int) -> tuple[dict[str, Any]]:
        hws = [list(hw) for hw in self._filled(handle).spec.hws]
        return ({"hwCount": len(hws), "hw": hws},)

    # ----------------------------------------------------------------- datasets

    def api_create_dataset(self) -> int:
        dataset = Dataset(self.new_handle())
        self.datasets[dataset.handle] = dataset
        return dataset.handle

    def _dataset(self, handle: int, destroy: bool = False) -> Dataset:
        return self._lookup(self.datasets, handle, "dataset", destroy=destroy, code=INVALID_PARAM)

    def api_destroy_dataset(self, handle: int) -> tuple[()]:
        dataset = self._dataset(handle, destroy=True)
        del self.datasets[dataset.handle]
        self.dead[dataset.handle] = "dataset"
        return ()

    def api_add_dataset_buffer(self, handle: int, buffer: int) -> tuple[int]:
        dataset = self._dataset(handle)
        self._lookup(self.buffers, buffer, "data_buffer", code=INVALID_PARAM)
        dataset.buffers.append(buffer)
        return (dataset.handle,)

    def api_get_dataset_num_buffers(self, handle: int) -> int:
        return int(self._quiet(lambda: len(self._dataset(handle).buffers), 0))

    def api_get_dataset_buffer(self, handle: int, index: int) -> int:
        def get() -> int:
            buffers = self._dataset(handle).buffers
            if index >= len(buffers):
                raise Fail(INVALID_PARAM, f"index {index} is out of range 0..{len(buffers) - 1}")
            return buffers[index]

        return int(self._quiet(get, 0))

    def _dynamic_buffer(self, model_id: int, handle: int, index: int) -> tuple[LoadedModel, int]:
        model = self._model(model_id)
        spec = model.spec
        if not spec.dynamic:
            raise Fail(GE_PARAM_INVALID, f"model {model_id} has no dynamic batch or image size")
        if index != len(spec.inputs) - 1:
            raise Fail(
                GE_PARAM_INVALID,
                f"index {index} is not the dynamic-size input {_model_file.DYNAMIC_INPUT!r} "
                f"(index {len(spec.inputs) - 1})",
            )
        dataset = self._dataset(handle)
        if index >= len(dataset.buffers):
            raise Fail(
                GE_PARAM_INVALID,
                f"dataset 0x{handle:x} has no buffer at index {index} for the dynamic-size input",
            )
        buf = self._lookup(self.buffers, dataset.buffers[index], "data_buffer", code=INVALID_PARAM)
        need = spec.input_size(index)
        if buf.size < need:
            raise Fail(GE_PARAM_INVALID, f"the dynamic-size input buffer needs {need} bytes")
        real, _ = self._resolve(buf.ptr, need, "dynamic-size input")
        return model, real

    def api_set_dynamic_batch_size(
        self, model_id: int, handle: int, index: int, batch: int
    ) -> tuple[()]:
        model, real = self._dynamic_buffer(model_id, handle, index)
        if not model.spec.batches or batch not in model.spec.batches:
            raise Fail(
                GE_PARAM_INVALID,
                f"batch size {batch} is not one of the model's {list(model.spec.batches)}",
            )
        ctypes.memmove(real, int(batch).to_bytes(8, "little"), 8)
        return ()

    def api_set_dynamic_hw_size(
        self, model_id: int, handle: int, index: int, height: int, width: int
    ) -> tuple[()]:
        model, real = self._dynamic_buffer(model_id, handle, index)
        if (height, width) not in model.spec.hws:
            raise Fail(
                GE_PARAM_INVALID,
                f"image size {height}x{width} is not one of the model's "
                f"{[list(hw) for hw in model.spec.hws]}",
            )
        ctypes.memmove(real, height.to_bytes(8, "little") + width.to_bytes(8, "little"), 16)
        return ()

    # ----------------------------------------------------------------- execution

    def _buffers(self, handle: int, role: str, count: int, model: LoadedModel) -> list[Any]:
        dataset = self._dataset(handle)
        if len(dataset.buffers) != count:
            raise Fail(
                GE_PARAM_INVALID,
                f"{role} dataset has {len(dataset.buffers)} buffer(s); model {model.id} has "
                f"{count} {role}(s)",
            )
        return [
            self._lookup(self.buffers, h, "data_buffer", code=INVALID_PARAM)
            for h in dataset.buffers
        ]

    def _device_range(
        self, model: LoadedModel, ptr: int, count: int, what: str
    ) -> tuple[int, Alloc]:
        real, alloc = self._resolve(ptr, count, what)
        # In RC mode (run_mode 0) the host is the device: malloc_host memory serves too.
        if alloc is None or (not alloc.is_device and self.config.run_mode != 0):
            raise Fail(
                RT_PARAM_INVALID,
                f"{what} 0x{ptr:x} is host memory; model inputs and outputs must be device memory",
            )
        if alloc.device != model.device:
            raise Fail(
                RT_PARAM_INVALID,
                f"{what} is memory of device {alloc.device}, but model {model.id} is loaded on "
                f"device {model.device}",
            )
        return real, alloc

    def _plan(self, model_id: int, in_handle: int, out_handle: int) -> _Plan:
        model = self._model(model_id)
        self._in_model_context(model, "executing")
        spec = model.spec
        plan = _Plan(model)
        for alloc in model.caller_memory:
            if alloc.freed:
                self.violate("stale_handle", f"model {model.id}'s work or weight memory was freed")
                raise Fail(RT_PARAM_INVALID, f"model {model.id}'s work or weight memory was freed")
        inputs = self._buffers(in_handle, "input", len(spec.inputs), model)
        outputs = self._buffers(out_handle, "output", len(spec.outputs), model)
        if spec.dynamic:
            plan.gear = self._gear(model, inputs[-1])
        np = self._numpy()
        moved = spec.weight_bytes
        for i, (tensor, buf) in enumerate(zip(spec.data_inputs, inputs)):
            shape = spec.input_shape(i, plan.gear)
            need = int(np.dtype(tensor.dtype).itemsize) * _count(shape)
            if buf.size < need:
                raise Fail(
                    GE_PARAM_INVALID,
                    f"input {i} ({tensor.name}) buffer holds {buf.size} bytes; the model needs "
                    f"{need}",
                )
            real, alloc = self._device_range(model, buf.ptr, need, f"input {i} ({tensor.name})")
            plan.inputs.append((real, shape, tensor.dtype))
            plan.allocs.append(alloc)
            moved += need
        for k, (tensor, buf) in enumerate(zip(spec.outputs, outputs)):
            need = spec.output_sizes[k] if plan.gear is None else 0
            if buf.size < need or buf.size == 0:
                raise Fail(
                    GE_PARAM_INVALID,
                    f"output {k} ({tensor.name}) buffer holds {buf.size} bytes; the model writes "
                    f"{spec.output_sizes[k]}",
                )
            real, alloc = self._device_range(
                model, buf.ptr, buf.size, f"output {k} ({tensor.name})"
            )
            plan.outputs.append((real, buf.size))
            plan.allocs.append(alloc)
            moved += spec.output_sizes[k]
        plan.cost = self.config.model_cost_per_mb * moved / (1 << 20)
        return plan

    def _gear(self, model: LoadedModel, buf: Any) -> tuple[int, ...]:
        spec = model.spec
        need = spec.input_size(len(spec.inputs) - 1)
        real, _ = self._device_range(model, buf.ptr, need, "dynamic-size input")
        raw = ctypes.string_at(real, need)
        gear = tuple(int.from_bytes(raw[i : i + 8], "little") for i in range(0, need, 8))
        if gear not in spec.gears():
            setter = "set_dynamic_batch_size" if spec.batches else "set_dynamic_hw_size"
            raise Fail(
                GE_PARAM_INVALID,
                f"the dynamic-size input holds {list(gear)}, not one of the model's sizes; "
                f"call acl.mdl.{setter} on this dataset first",
            )
        return gear

    @staticmethod
    def _numpy() -> Any:
        try:
            return _model_file.numpy_or_fail()
        except ModelFileError as exc:
            raise Fail(exc.code, exc.message) from None

    def _run_plan(self, plan: _Plan) -> None:
        """Read the inputs, run the pipeline, write the outputs (holding the lock)."""
        for alloc in plan.allocs:
            if alloc.freed:
                self.violate(
                    "stale_handle", f"model {plan.model.id} input or output memory was freed"
                )
                raise Fail(RT_PARAM_INVALID, "a model input or output buffer was freed meanwhile")
        np = self._numpy()
        arrays = []
        for real, shape, dtype in plan.inputs:
            nbytes = int(np.dtype(dtype).itemsize) * _count(shape)
            raw = ctypes.string_at(real, nbytes)
            arrays.append(np.frombuffer(raw, dtype=dtype).reshape(shape))
        try:
            with np.errstate(all="ignore"):
                results = plan.model.spec.run(arrays)
        except (ValueError, TypeError, IndexError, MemoryError) as exc:
            raise Fail(RT_MODEL_EXECUTE, f"model {plan.model.id} failed: {exc}") from None
        for k, ((real, capacity), value) in enumerate(zip(plan.outputs, results)):
            data = value.tobytes()
            if len(data) > capacity:
                raise Fail(
                    GE_PARAM_INVALID,
                    f"output {k} needs {len(data)} bytes; its buffer holds {capacity}",
                )
            ctypes.memmove(real, data, len(data))
        plan.model.last_shapes = [tuple(int(d) for d in r.shape) for r in results]

    def api_execute(self, model_id: int, in_handle: int, out_handle: int) -> tuple[()]:
        with self.lock:
            plan = self._plan(model_id, in_handle, out_handle)
            for alloc in plan.allocs:
                alloc.pending += 1
        try:
            if plan.cost:
                time.sleep(plan.cost)
        finally:
            with self.lock:
                for alloc in plan.allocs:
                    alloc.pending -= 1
        with self.lock:
            self._run_plan(plan)
        return ()

    def api_execute_async(
        self, model_id: int, in_handle: int, out_handle: int, stream_handle: int
    ) -> tuple[()]:
        plan = self._plan(model_id, in_handle, out_handle)
        stream = self._stream(stream_handle)
        if stream.device != plan.model.device:
            raise Fail(
                RT_STREAM_CONTEXT,
                f"stream 0x{stream_handle:x} is on device {stream.device}, model {model_id} on "
                f"device {plan.model.device}",
            )
        gate = Record()
        gate.done = _Elapse(plan.cost)

        def run() -> None:
            try:
                self._run_plan(plan)
            except Fail as failure:
                self.violate(
                    "async_failure", f"execute_async of model {model_id}: {failure.message}"
                )

        self._submit(stream, Task(run, allocs=tuple(plan.allocs), wait_for=gate))
        return ()


def _count(shape: tuple[int, ...]) -> int:
    total = 1
    for d in shape:
        total *= d
    return total
