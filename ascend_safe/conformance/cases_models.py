"""Models (``acl.mdl``): descriptions, datasets, loading, execution, dynamic sizes.

Cases that need a model load one of the files the user passes with ``--model PATH`` (an
``.om`` built for the machine's SoC; several may be given) and pick the first that fits: any
model, a static one (no ``ascend_mbatch_shape_data`` input), one with dynamic batch sizes, or
one with dynamic image sizes. Without a fitting file they are skipped (``n/a``). They check
what holds for every model rather than one model's numbers: the description agrees with
itself, sizes follow dims and ``data_type_size``, ``execute`` and ``execute_async`` give the
same bytes for the same inputs. On the simulator the kit uses the small models of
:data:`SAMPLE_MODELS` (:func:`write_sample_models`). Cases that need no model (empty
descriptions, datasets, error paths) run everywhere.

Return shapes and parse formats: pyACL ``mdl/mdl_wrap.cpp``. GE codes: pyacl-api.md section 13.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Callable, Optional

from ._case import NotApplicable, Probe, SetupError, case, shape

__all__ = ["DYNAMIC_INPUT", "SAMPLE_MODELS", "write_sample_models"]

MDL = "python/pyACL mdl/mdl_wrap.cpp: "
GE_CHOICE = "pyacl-api.md section 13 (GE codes); the code the simulator chose (docs/simulator.md)"
#: CANN's ACL_DYNAMIC_TENSOR_NAME: the input that carries a dynamic batch or image size.
DYNAMIC_INPUT = "ascend_mbatch_shape_data"

#: The models the kit loads on the simulator: keyword arguments of
#: ``ascend_safe.sim.write_model`` (plain data, no weights), by file name.
SAMPLE_MODELS: dict[str, dict[str, Any]] = {
    "static.model": {
        "inputs": [["x", "float32", [2, 4]]],
        "outputs": [["y", "float32", [2, 4]]],
        "ops": [{"op": "mul", "value": 2.0}],
    },
    "dynamic_batch.model": {
        "inputs": [["x", "float32", [-1, 4]]],
        "outputs": [["y", "float32", [-1, 4]]],
        "ops": [{"op": "relu"}],
        "dynamic_batch": [1, 2, 4],
    },
    "dynamic_hw.model": {
        "inputs": [["img", "float32", [1, 3, -1, -1], "NCHW"]],
        "outputs": [["out", "float32", [1, 3, -1, -1], "NCHW"]],
        "ops": [{"op": "relu"}],
        "dynamic_hw": [[8, 8], [16, 16]],
    },
}


def write_sample_models(write_model: Callable[..., Any], directory: str) -> list[str]:
    """Write :data:`SAMPLE_MODELS` into *directory* with *write_model* (the simulator's
    ``write_model``); the paths, for ``--model``."""
    paths = []
    for name, spec in SAMPLE_MODELS.items():
        path = os.path.join(directory, name)
        write_model(path, **spec)
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------- helpers


class _Model:
    """A loaded model with its filled description; unloaded at the end of the case."""

    def __init__(self, p: Probe, path: str, model_id: int, desc: int) -> None:
        self.p = p
        self.path = path
        self.id = model_id
        self.desc = desc
        self.loaded = True

    def release(self) -> None:
        """Unload the model unless the case did."""
        if self.loaded:
            self.unload()

    def unload(self) -> int:
        ret: int = self.p.acl.mdl.unload(self.id)
        if ret == 0:
            self.loaded = False
        return ret


def _is_static(p: Probe, desc: int) -> bool:
    return bool(p.acl.mdl.get_input_index_by_name(desc, DYNAMIC_INPUT)[-1] != 0)


def _batches(p: Probe, desc: int) -> list[int]:
    info, ret = p.acl.mdl.get_dynamic_batch(desc)
    return list(info.get("batch", [])) if ret == 0 else []


def _hws(p: Probe, desc: int) -> list[list[int]]:
    info, ret = p.acl.mdl.get_dynamic_hw(desc, -1)
    return [list(hw) for hw in info.get("hw", [])] if ret == 0 else []


KINDS: dict[str, Callable[[Probe, int], bool]] = {
    "any": lambda p, desc: True,
    "static": _is_static,
    "dynamic-batch": lambda p, desc: not _is_static(p, desc) and bool(_batches(p, desc)),
    "dynamic-hw": lambda p, desc: not _is_static(p, desc) and bool(_hws(p, desc)),
}


def _load(p: Probe, kind: str = "any") -> _Model:
    """Load the first model file that is of *kind*; skip the case when there is none."""
    if not p.models:
        raise NotApplicable("needs a model file: pass --model PATH (an .om for this SoC)")
    mdl = p.acl.mdl
    failures = []
    for path in p.models:
        model_id, ret = mdl.load_from_file(path)
        if ret != 0:
            failures.append(f"{path}: load_from_file returned {ret}")
            continue
        desc = mdl.create_desc()
        if not desc or mdl.get_desc(desc, model_id) != 0:
            if desc:
                mdl.destroy_desc(desc)
            mdl.unload(model_id)
            raise SetupError(f"{path}: create_desc/get_desc failed")
        if KINDS[kind](p, desc):
            model = _Model(p, path, model_id, desc)
            p.defer(model.release)
            p.defer(mdl.destroy_desc, desc)
            p.note("model", os.path.basename(path))
            return model
        mdl.destroy_desc(desc)
        mdl.unload(model_id)
    if failures and len(failures) == len(p.models):
        raise SetupError("; ".join(failures))
    raise NotApplicable(f"none of the model files given is a {kind} model")


def _empty(p: Probe, kind: str) -> Any:
    """A new, empty ``mdl.create_<kind>()`` (``desc`` or ``dataset``), destroyed at the end."""
    handle = p.fn(f"mdl.create_{kind}")()
    p.defer(p.fn(f"mdl.destroy_{kind}"), handle)
    return handle


def _dataset(p: Probe, sizes: Sequence[int], fill: Optional[Callable[[int], bytes]] = None) -> int:
    """A dataset of device buffers of *sizes* (filled with ``fill(size)``), released later."""
    acl = p.acl
    dataset: int = acl.mdl.create_dataset()
    if not dataset:
        raise SetupError("acl.mdl.create_dataset returned 0")
    p.defer(acl.mdl.destroy_dataset, dataset)
    for size in sizes:
        ptr = p.malloc(max(size, 1))
        if fill is not None and size:
            p.write_device(ptr, fill(size))
        buf = acl.create_data_buffer(ptr, size)
        if not buf:
            raise SetupError("acl.create_data_buffer returned 0")
        p.defer(acl.destroy_data_buffer, buf)
        p.ok("mdl.add_dataset_buffer", dataset, buf)
    return dataset


def _pattern(size: int) -> bytes:
    # Small non-negative float32 values whatever the dtype's width: bytes 0..15 repeated.
    return bytes((i * 5) % 16 for i in range(size))


def _sizes(p: Probe, desc: int, output: bool) -> list[int]:
    mdl = p.acl.mdl
    count = mdl.get_num_outputs(desc) if output else mdl.get_num_inputs(desc)
    get = mdl.get_output_size_by_index if output else mdl.get_input_size_by_index
    return [int(get(desc, i)) for i in range(count)]


def _outputs(p: Probe, dataset: int) -> list[bytes]:
    acl = p.acl
    out = []
    for i in range(acl.mdl.get_dataset_num_buffers(dataset)):
        buf = acl.mdl.get_dataset_buffer(dataset, i)
        out.append(p.read_device(acl.get_data_buffer_addr(buf), acl.get_data_buffer_size(buf)))
    return out


# ---------------------------------------------------------------------------- no model needed


@case(
    "mdl.desc_dataset.shapes",
    "models",
    expect=["int", "ret=0", "int", "(int, ret=0)", True, 1, True, "ret=0", "ret=0"],
    evidence=MDL + "create_desc/create_dataset (bare handle), destroy_desc/destroy_dataset "
    "(ret), add_dataset_buffer (dataset, ret), get_dataset_num_buffers and get_dataset_buffer "
    "(bare values)",
)
def _desc_dataset(p: Probe) -> Any:
    acl = p.acl
    mdl = acl.mdl
    desc = mdl.create_desc()
    done: list[str] = []
    p.defer(lambda: "desc" in done or mdl.destroy_desc(desc))
    dataset = mdl.create_dataset()
    p.defer(lambda: "dataset" in done or mdl.destroy_dataset(dataset))
    buf = acl.create_data_buffer(0, 0)
    p.defer(lambda: "buffer" in done or acl.destroy_data_buffer(buf))
    added = mdl.add_dataset_buffer(dataset, buf)
    out = [
        shape(desc, bare=True),
        shape(mdl.destroy_desc(desc)),
        shape(dataset, bare=True),
        shape(added),
        added[0] == dataset,
        mdl.get_dataset_num_buffers(dataset),
        mdl.get_dataset_buffer(dataset, 0) == buf,
    ]
    done.append("desc")
    out.append(shape(mdl.destroy_dataset(dataset)))
    done.append("dataset")
    out.append(shape(acl.destroy_data_buffer(buf)))
    done.append("buffer")
    return out


@case(
    "mdl.empty_desc.getters",
    "models",
    expect=[0, 0, 0, 0, -1, -1, -1, -1, None, None],
    evidence=MDL + "bare getters return 0, the enum value or the name ('s': NULL -> None); for "
    "a description no get_desc filled the values (0, ACL_DT_UNDEFINED -1, ACL_FORMAT_UNDEFINED "
    "-1, NULL) are the simulator's choice (docs/simulator.md)",
)
def _empty_desc(p: Probe) -> Any:
    mdl = p.acl.mdl
    desc = _empty(p, "desc")
    return [
        mdl.get_num_inputs(desc),
        mdl.get_num_outputs(desc),
        mdl.get_input_size_by_index(desc, 0),
        mdl.get_output_size_by_index(desc, 0),
        mdl.get_input_data_type(desc, 0),
        mdl.get_output_data_type(desc, 0),
        mdl.get_input_format(desc, 0),
        mdl.get_output_format(desc, 0),
        mdl.get_input_name_by_index(desc, 0),
        mdl.get_output_name_by_index(desc, 0),
    ]


@case(
    "mdl.empty_desc.tuple_getters",
    "models",
    expect=[[{}, 100000]] * 5 + [[0, 100000]] * 2,
    evidence=MDL + "get_input_dims/get_output_dims/get_cur_output_dims/get_dynamic_batch/"
    "get_dynamic_hw return (empty dict, ret) when the call fails; get_*_index_by_name "
    "(index, ret); the code for an empty description is the simulator's choice",
)
def _empty_desc_tuples(p: Probe) -> Any:
    mdl = p.acl.mdl
    desc = _empty(p, "desc")
    results = [
        mdl.get_input_dims(desc, 0),
        mdl.get_output_dims(desc, 0),
        mdl.get_cur_output_dims(desc, 0),
        mdl.get_dynamic_batch(desc),
        mdl.get_dynamic_hw(desc, -1),
        mdl.get_input_index_by_name(desc, "x"),
        mdl.get_output_index_by_name(desc, "y"),
    ]
    return [list(r) for r in results]


@case(
    "mdl.dataset.index_out_of_range",
    "models",
    expect=[0, 0],
    evidence=MDL + "get_dataset_buffer returns the bare handle: NULL (0) past the last buffer; "
    "a new dataset holds no buffer",
)
def _dataset_range(p: Probe) -> Any:
    mdl = p.acl.mdl
    dataset = _empty(p, "dataset")
    return [mdl.get_dataset_num_buffers(dataset), mdl.get_dataset_buffer(dataset, 3)]


@case(
    "mdl.null_handles",
    "models",
    expect=[100000, 100000],
    evidence=MDL + "destroy_desc/destroy_dataset return ret; NULL -> ACL_ERROR_INVALID_PARAM "
    "is the simulator's choice (docs/simulator.md)",
)
def _mdl_null(p: Probe) -> Any:
    return [p.acl.mdl.destroy_desc(0), p.acl.mdl.destroy_dataset(0)]


def _load_fails_case(
    id: str, load: str, query: str, args: tuple[Any, ...], expect: list[Any], evidence: str
) -> None:
    """Register a case observing ``mdl.<load>(*args)`` and ``mdl.<query>(*args)`` (a model that
    wrongly loads is unloaded)."""

    @case(id, "models", expect=expect, evidence=evidence)
    def _probe(p: Probe) -> Any:
        result = p.fn(f"mdl.{load}")(*args)
        if result[1] == 0:
            p.defer(p.acl.mdl.unload, result[0])
        return [list(result), list(p.fn(f"mdl.{query}")(*args))]


_load_fails_case(
    "mdl.load_from_file.missing_file",
    "load_from_file",
    "query_size",
    ("/nonexistent/ascend_safe-conformance/missing.om",),
    [[0, 145002], [0, 0, 145002]],
    GE_CHOICE + ": an unreadable path -> ACL_ERROR_GE_EXEC_MODEL_PATH_INVALID",
)
_load_fails_case(
    "mdl.load_from_mem.null",
    "load_from_mem",
    "query_size_from_mem",
    (0, 0),
    [[0, 145000], [0, 0, 145000]],
    GE_CHOICE + ": NULL model data -> ACL_ERROR_GE_PARAM_INVALID",
)


@case(
    "mdl.unknown_model_id",
    "models",
    expect=[145003, 145003, 145003],
    evidence=GE_CHOICE + ": unload, get_desc and execute of a model id never handed out -> "
    "ACL_ERROR_GE_EXEC_MODEL_ID_INVALID",
)
def _unknown_id(p: Probe) -> Any:
    mdl = p.acl.mdl
    desc = _empty(p, "desc")
    dataset = _empty(p, "dataset")
    unknown = 0xFFFFFF0
    return [
        mdl.unload(unknown),
        mdl.get_desc(desc, unknown),
        mdl.execute(unknown, dataset, dataset),
    ]


def _destroy_twice_case(id: str, kind: str, evidence: str) -> None:
    """Register a case creating with ``mdl.create_<kind>`` and destroying twice."""

    @case(id, "models", expect=[0, 100000], isolated=True, evidence=evidence)
    def _probe(p: Probe) -> Any:
        handle = p.fn(f"mdl.create_{kind}")()
        destroy = p.fn(f"mdl.destroy_{kind}")
        first = destroy(handle)
        if first != 0:
            p.defer(destroy, handle)
        return [first, destroy(handle)]


_destroy_twice_case(
    "mdl.destroy_desc.twice",
    "desc",
    GE_CHOICE + " (a destroyed description is a dangling host pointer)",
)
_destroy_twice_case(
    "mdl.destroy_dataset.twice",
    "dataset",
    GE_CHOICE + " (a destroyed dataset is a dangling host pointer)",
)


# ---------------------------------------------------------------------------- with a model


@case(
    "mdl.load_from_file.shapes",
    "models",
    expect=["(int, ret=0)", "(int, int, ret=0)", "int", "ret=0", "ret=0", "ret=0"],
    evidence=MDL + "load_from_file (model_id 'I', ret), query_size (work, weight, ret), "
    "create_desc (bare), get_desc, destroy_desc and unload (ret)",
)
def _load_shapes(p: Probe) -> Any:
    model = _load(p)
    mdl = p.acl.mdl
    again = mdl.load_from_file(model.path)
    alive = [again[1] == 0]
    p.defer(lambda: alive[0] and mdl.unload(again[0]))
    desc = mdl.create_desc()
    out = [shape(again), shape(mdl.query_size(model.path)), shape(desc, bare=True)]
    out.append(shape(mdl.get_desc(desc, again[0])))
    out.append(shape(mdl.destroy_desc(desc)))
    out.append(shape(mdl.unload(again[0])))
    alive[0] = False
    return out


@case(
    "mdl.load_from_mem.shapes",
    "models",
    expect=["(int, ret=0)", "(int, int, ret=0)", True, "ret=0"],
    evidence=MDL + "load_from_mem (model_id, ret) and query_size_from_mem (work, weight, ret) "
    "read model bytes from host memory; the sizes equal query_size's for the same file",
)
def _load_mem(p: Probe) -> Any:
    model = _load(p)
    mdl = p.acl.mdl
    with open(model.path, "rb") as handle:
        data = handle.read()
    ptr = p.pageable(data)
    loaded = mdl.load_from_mem(ptr, len(data))
    alive = [loaded[1] == 0]
    p.defer(lambda: alive[0] and mdl.unload(loaded[0]))
    sizes = mdl.query_size_from_mem(ptr, len(data))
    out = [shape(loaded), shape(sizes), list(sizes) == list(mdl.query_size(model.path))]
    out.append(shape(mdl.unload(loaded[0])))
    alive[0] = False
    return out


@case(
    "mdl.load_with_mem.shapes",
    "models",
    expect=["(int, ret=0)", "ret=0", "(int, ret=0)", "ret=0"],
    evidence=MDL + "load_from_file_with_mem and load_from_mem_with_mem (model_id, ret) with "
    "caller work and weight memory of query_size's sizes",
)
def _load_with_mem(p: Probe) -> Any:
    model = _load(p)
    mdl = p.acl.mdl
    work, weight = p.ok("mdl.query_size", model.path)
    work_ptr = p.malloc(work) if work else 0
    weight_ptr = p.malloc(weight) if weight else 0
    with open(model.path, "rb") as handle:
        data = handle.read()
    ptr = p.pageable(data)
    out = []
    for result in (
        mdl.load_from_file_with_mem(model.path, work_ptr, work, weight_ptr, weight),
        mdl.load_from_mem_with_mem(ptr, len(data), work_ptr, work, weight_ptr, weight),
    ):
        out.append(shape(result))
        out.append(shape(mdl.unload(result[0])) if result[1] == 0 else "not loaded")
    return out


@case(
    "mdl.desc.consistent",
    "models",
    expect=[True, True, True, True, True],
    evidence=MDL + "get_input_dims/get_output_dims return (dict of name, dimCount, dims; ret); "
    "names and indexes round-trip through get_*_name_by_index and get_*_index_by_name; the "
    "size of a static tensor is the product of its dims times data_type_size of its type",
)
def _desc_consistent(p: Probe) -> Any:
    model = _load(p, "static")
    acl = p.acl
    mdl = acl.mdl
    desc = model.desc
    shapes_ok = names_ok = index_ok = sizes_ok = True
    described = []
    for output in (False, True):
        count = mdl.get_num_outputs(desc) if output else mdl.get_num_inputs(desc)
        dims_of = mdl.get_output_dims if output else mdl.get_input_dims
        name_of = mdl.get_output_name_by_index if output else mdl.get_input_name_by_index
        index_of = mdl.get_output_index_by_name if output else mdl.get_input_index_by_name
        size_of = mdl.get_output_size_by_index if output else mdl.get_input_size_by_index
        dtype_of = mdl.get_output_data_type if output else mdl.get_input_data_type
        format_of = mdl.get_output_format if output else mdl.get_input_format
        for i in range(count):
            result = dims_of(desc, i)
            info = result[0]
            shapes_ok &= shape(result) == "(dict, ret=0)" and sorted(info) == [
                "dimCount",
                "dims",
                "name",
            ]
            dims = list(info.get("dims", []))
            shapes_ok &= info.get("dimCount") == len(dims)
            name = name_of(desc, i)
            names_ok &= name == info.get("name")
            index_ok &= list(index_of(desc, name)) == [i, 0]
            dtype = dtype_of(desc, i)
            expected = acl.data_type_size(dtype)
            for d in dims:
                expected *= d
            if all(d >= 0 for d in dims):
                sizes_ok &= size_of(desc, i) == expected
            described.append(
                {
                    "role": "output" if output else "input",
                    "name": name,
                    "dims": dims,
                    "dtype": dtype,
                    "format": format_of(desc, i),
                    "size": size_of(desc, i),
                }
            )
    p.note("description", described)
    counts_ok = mdl.get_num_inputs(desc) >= 1 and mdl.get_num_outputs(desc) >= 1
    return [counts_ok, shapes_ok, names_ok, index_ok, sizes_ok]


@case(
    "mdl.execute.sync_and_async_agree",
    "models",
    expect=[0, 0, 0, True, "(dict, ret=0)"],
    evidence=MDL + "execute (ret, synchronous) and execute_async (ret; the work is queued on "
    "the stream) compute the same outputs from the same inputs; get_cur_output_dims "
    "(dict, ret) after an execution",
)
def _execute(p: Probe) -> Any:
    model = _load(p, "static")
    mdl = p.acl.mdl
    inputs = _dataset(p, _sizes(p, model.desc, False), _pattern)
    first = _dataset(p, _sizes(p, model.desc, True))
    second = _dataset(p, _sizes(p, model.desc, True))
    stream = p.stream()
    sync = mdl.execute(model.id, inputs, first)
    queued = mdl.execute_async(model.id, inputs, second, stream)
    synced = p.acl.rt.synchronize_stream(stream)
    same = sync == queued == 0 and _outputs(p, first) == _outputs(p, second)
    return [sync, queued, synced, same, shape(mdl.get_cur_output_dims(model.desc, 0))]


@case(
    "mdl.execute.output_dataset_too_small",
    "models",
    expect=145000,
    evidence=GE_CHOICE + ": an output dataset with fewer buffers than the model has outputs",
)
def _execute_short(p: Probe) -> Any:
    model = _load(p, "static")
    inputs = _dataset(p, _sizes(p, model.desc, False), _pattern)
    outputs = _dataset(p, [])
    return p.acl.mdl.execute(model.id, inputs, outputs)


@case(
    "mdl.unload.twice",
    "models",
    expect=[0, 145003],
    evidence=GE_CHOICE + ": unloading an unloaded model id -> ACL_ERROR_GE_EXEC_MODEL_ID_INVALID",
)
def _unload_twice(p: Probe) -> Any:
    model = _load(p)
    return [model.unload(), p.acl.mdl.unload(model.id)]


@case(
    "mdl.execute.other_context",
    "models",
    expect=107004,
    evidence="src/runtime/api/impl/api_impl.cc: ModelExecute checks the model's context "
    "against the current one -> ACL_ERROR_RT_MODEL_CONTEXT (107004)",
)
def _other_context(p: Probe) -> Any:
    model = _load(p, "static")
    inputs = _dataset(p, _sizes(p, model.desc, False), _pattern)
    outputs = _dataset(p, _sizes(p, model.desc, True))
    p.context()  # a second context on the same device is now current
    return p.acl.mdl.execute(model.id, inputs, outputs)


def _dynamic_case(p: Probe, kind: str) -> list[Any]:
    """Shape of the gear query, a listed gear, an unlisted one, then an execution."""
    model = _load(p, kind)
    mdl = p.acl.mdl
    desc = model.desc
    index = mdl.get_input_index_by_name(desc, DYNAMIC_INPUT)[0]
    sizes = _sizes(p, desc, False)
    inputs = _dataset(p, sizes, lambda n: bytes(n))
    outputs = _dataset(p, _sizes(p, desc, True))
    if kind == "dynamic-batch":
        query = mdl.get_dynamic_batch(desc)
        listed = query[0]["batch"][0]
        set_ok = mdl.set_dynamic_batch_size(model.id, inputs, index, listed)
        set_bad = mdl.set_dynamic_batch_size(model.id, inputs, index, max(query[0]["batch"]) + 1)
        keys = sorted(query[0])
    else:
        query = mdl.get_dynamic_hw(desc, -1)
        height, width = query[0]["hw"][0]
        set_ok = mdl.set_dynamic_hw_size(model.id, inputs, index, height, width)
        set_bad = mdl.set_dynamic_hw_size(model.id, inputs, index, height + 1, width + 3)
        keys = sorted(query[0])
    p.note("gears", query[0])
    return [shape(query), keys, set_ok, set_bad, mdl.execute(model.id, inputs, outputs)]


def _dynamic_gears_case(id: str, kind: str, keys: list[str], evidence: str) -> None:
    """Register a case querying and setting the gears of a *kind* model (``_dynamic_case``)."""

    @case(id, "models", expect=["(dict, ret=0)", keys, 0, 145000, 0], evidence=evidence)
    def _probe(p: Probe) -> Any:
        return _dynamic_case(p, kind)


_dynamic_gears_case(
    "mdl.dynamic_batch",
    "dynamic-batch",
    ["batch", "batchCount"],
    MDL + "get_dynamic_batch (dict of batchCount, batch; ret), set_dynamic_batch_size "
    "(ret); a batch size the model does not list is refused (" + GE_CHOICE + ")",
)
_dynamic_gears_case(
    "mdl.dynamic_hw",
    "dynamic-hw",
    ["hw", "hwCount"],
    MDL + "get_dynamic_hw(desc, -1) (dict of hwCount, hw; ret), set_dynamic_hw_size "
    "(ret); an image size the model does not list is refused (" + GE_CHOICE + ")",
)


@case(
    "mdl.static_model.no_dynamic_sizes",
    "models",
    expect=[[0, []], [0, []], 145000],
    evidence=MDL + "get_dynamic_batch/get_dynamic_hw of a static model: counts 0 and empty "
    "lists, ret 0; set_dynamic_batch_size on it is refused (" + GE_CHOICE + ")",
)
def _static_gears(p: Probe) -> Any:
    model = _load(p, "static")
    mdl = p.acl.mdl
    batch, ret_batch = mdl.get_dynamic_batch(model.desc)
    hw, ret_hw = mdl.get_dynamic_hw(model.desc, -1)
    inputs = _dataset(p, _sizes(p, model.desc, False))
    return [
        [ret_batch, batch.get("batch")],
        [ret_hw, hw.get("hw")],
        mdl.set_dynamic_batch_size(model.id, inputs, 0, 1),
    ]
