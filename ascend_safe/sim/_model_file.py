"""The simulator's model file: a fixed header, a JSON description and ``.npy`` weights.

A model file is data, never code: the description names inputs and outputs and a short pipeline
of operations from a fixed list, and weights are loaded with ``numpy.load(allow_pickle=False)``.
Nothing is evaluated and nothing is unpickled. Every malformed or hostile file is refused with
:class:`ModelFileError` (an error code and a message), never with a crash. Layout::

    8 bytes   magic b"ASFSIMMD"
    4 bytes   format version (little endian, 1)
    4 bytes   length N of the JSON description (little endian)
    N bytes   UTF-8 JSON description
    rest      weight blobs, each a complete .npy file, placed by offset/nbytes in the description

See ``docs/simulator.md`` (section "Models") for the description's fields and the operations.
"""

from __future__ import annotations

import io
import json
import math
import struct
from collections.abc import Sequence
from typing import Any, Optional

__all__ = [
    "DTYPES",
    "DYNAMIC_INPUT",
    "MAGIC",
    "ModelFileError",
    "ModelSpec",
    "TensorSpec",
    "encode",
    "numpy_or_fail",
    "parse",
]

MAGIC = b"ASFSIMMD"
VERSION = 1
_HEADER = struct.Struct("<8sII")
#: Limits on what a description may declare (hostile files declare huge sizes).
MAX_FILE_BYTES = 1 << 30
MAX_JSON_BYTES = 1 << 20
MAX_TENSORS = 64
MAX_DIMS = 8
MAX_OPS = 256
MAX_GEARS = 100
MAX_ELEMENTS = 1 << 28
MAX_TENSOR_BYTES = 256 << 20
#: Name of the extra input that carries the chosen batch size or image size (CANN's
#: ``ACL_DYNAMIC_TENSOR_NAME``).
DYNAMIC_INPUT = "ascend_mbatch_shape_data"

#: GE codes (pyacl-api.md section 13): a bad argument, and a model that cannot be loaded.
GE_PARAM_INVALID = 145000
GE_LOAD_MODEL = 545001

#: numpy dtype name -> aclDataType.
DTYPES: dict[str, int] = {
    "float32": 0,
    "float16": 1,
    "int8": 2,
    "int32": 3,
    "uint8": 4,
    "int16": 6,
    "uint16": 7,
    "uint32": 8,
    "int64": 9,
    "uint64": 10,
    "float64": 11,
    "bool": 12,
}
#: aclFormat names accepted in a description.
FORMATS: dict[str, int] = {"NCHW": 0, "NHWC": 1, "ND": 2}
#: Where the image height and width sit, per format, for dynamic image size.
_HW_AXES = {0: (2, 3), 1: (1, 2)}
OPS = ("identity", "add", "mul", "matmul", "relu", "softmax", "argmax", "reshape", "output")


class ModelFileError(Exception):
    """A model that cannot be loaded: the pyacl error *code* and what is wrong."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


def numpy_or_fail() -> Any:
    """numpy, or a load error saying that models need it (it is a test extra)."""
    try:
        import numpy
    except ImportError:
        raise ModelFileError(
            GE_LOAD_MODEL, "simulated models need numpy (pip install numpy) to load and execute"
        ) from None
    return numpy


class TensorSpec:
    """One model input or output: name, dtype, shape (-1 for a dynamic dim), aclFormat."""

    __slots__ = ("dtype", "format", "name", "shape")

    def __init__(self, name: str, dtype: str, shape: tuple[int, ...], fmt: int) -> None:
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.format = fmt

    @property
    def acl_dtype(self) -> int:
        """The aclDataType value."""
        return DTYPES[self.dtype]


class ModelSpec:
    """A parsed model: its tensors, gears (dynamic batch / image sizes), ops and weights."""

    def __init__(
        self,
        inputs: list[TensorSpec],
        outputs: list[TensorSpec],
        ops: list[dict[str, Any]],
        weights: list[Any],
        batches: tuple[int, ...],
        hws: tuple[tuple[int, int], ...],
    ) -> None:
        self.inputs = inputs
        self.outputs = outputs
        self.ops = ops
        self.weights = weights
        self.batches = batches
        self.hws = hws
        self.weight_bytes = sum(int(w.nbytes) for w in weights)
        #: Largest byte size of each output over every gear (filled by the dry run).
        self.output_sizes: list[int] = [0] * len(outputs)

    @property
    def dynamic(self) -> bool:
        """Whether the model has a dynamic batch size or image size."""
        return bool(self.batches or self.hws)

    @property
    def data_inputs(self) -> list[TensorSpec]:
        """The inputs that carry data (without the dynamic-size input)."""
        return self.inputs[:-1] if self.dynamic else self.inputs

    def gears(self) -> list[Optional[tuple[int, ...]]]:
        """Every configuration the model runs in: batch sizes, image sizes, or just one."""
        if self.batches:
            return [(b,) for b in self.batches]
        if self.hws:
            return [hw for hw in self.hws]
        return [None]

    def input_shape(self, index: int, gear: Optional[tuple[int, ...]]) -> tuple[int, ...]:
        """Concrete shape of data input *index* in *gear*."""
        spec = self.inputs[index]
        shape = list(spec.shape)
        if gear is not None and len(gear) == 1:
            shape[0] = gear[0]
        elif gear is not None:
            h_axis, w_axis = _HW_AXES[spec.format]
            if shape[h_axis] == -1:
                shape[h_axis] = gear[0]
            if shape[w_axis] == -1:
                shape[w_axis] = gear[1]
        return tuple(shape)

    def input_size(self, index: int) -> int:
        """Bytes of input *index* in its largest gear (the size pyacl reports)."""
        spec = self.inputs[index]
        if self.dynamic and index == len(self.inputs) - 1:
            return 8 * spec.shape[0]
        np = numpy_or_fail()
        itemsize = int(np.dtype(spec.dtype).itemsize)
        return max(_count(self.input_shape(index, g)) * itemsize for g in self.gears())

    def work_bytes(self) -> int:
        """Working memory the model needs (what ``query_size`` reports)."""
        total = sum(self.output_sizes) + sum(self.input_size(i) for i in range(len(self.inputs)))
        return (total + 4095) // 4096 * 4096 + 4096

    def run(self, arrays: Sequence[Any]) -> list[Any]:
        """Run the pipeline on the data inputs *arrays*; one array per output, cast to its dtype."""
        np = numpy_or_fail()
        by_name = {spec.name: arr for spec, arr in zip(self.data_inputs, arrays)}
        current = arrays[0]
        results: dict[str, Any] = {}
        for op in self.ops:
            kind = op["op"]
            if kind == "add":
                if "input" in op:
                    other = by_name[op["input"]]
                    _bounded(np.broadcast_shapes(current.shape, other.shape))
                    current = current + other
                elif "weight" in op:
                    other = self.weights[op["weight"]]
                    _bounded(np.broadcast_shapes(current.shape, other.shape))
                    current = current + other
                else:
                    current = current + np.asarray(op["value"], dtype=current.dtype)
            elif kind == "mul":
                current = current * np.asarray(op["value"], dtype=current.dtype)
            elif kind == "matmul":
                weight = self.weights[op["weight"]]
                if current.ndim and weight.ndim == 2:
                    _bounded(current.shape[:-1] + weight.shape[1:])
                current = np.matmul(current, weight)
            elif kind == "relu":
                current = np.maximum(current, np.zeros((), dtype=current.dtype))
            elif kind == "softmax":
                axis = op.get("axis", -1)
                work = current.astype(np.result_type(current.dtype, np.float32))
                shifted = np.exp(work - np.max(work, axis=axis, keepdims=True))
                current = shifted / np.sum(shifted, axis=axis, keepdims=True)
            elif kind == "argmax":
                current = np.argmax(current, axis=op.get("axis", -1))
            elif kind == "reshape":
                current = np.reshape(current, tuple(op["shape"]))
            elif kind == "output":
                results[op["name"]] = current
        for spec in self.outputs:
            if spec.name not in results:
                results[spec.name] = current
        out = []
        for spec in self.outputs:
            value = np.asarray(results[spec.name])
            target = np.dtype(spec.dtype)
            if not np.can_cast(value.dtype, target, casting="same_kind"):
                raise ValueError(
                    f"output {spec.name!r} is computed as {value.dtype} but declared {target}"
                )
            out.append(np.ascontiguousarray(value.astype(target, copy=False)))
        return out


def _count(shape: Sequence[int]) -> int:
    return int(math.prod(shape))


def _bounded(shape: Sequence[int]) -> None:
    """Refuse an intermediate value larger than a tensor may be (hostile weight shapes)."""
    if _count(shape) > MAX_ELEMENTS:
        raise ValueError(f"an intermediate value of shape {list(shape)} is too large")


def _fail(message: str) -> ModelFileError:
    return ModelFileError(GE_LOAD_MODEL, message)


# ------------------------------------------------------------------------------ parsing


def parse(data: bytes) -> ModelSpec:
    """Check and decode a model file; :class:`ModelFileError` for anything wrong with it."""
    if len(data) > MAX_FILE_BYTES:
        raise _fail(f"model is {len(data)} bytes, over the {MAX_FILE_BYTES}-byte limit")
    if len(data) < _HEADER.size:
        raise _fail(f"model is truncated: {len(data)} bytes, shorter than its header")
    magic, version, json_len = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise _fail(
            "not a simulated model (bad magic): real .om files cannot run on the simulator; "
            "write one with ascend_safe.sim.write_model"
        )
    if version != VERSION:
        raise _fail(f"model format version {version} is not supported (expected {VERSION})")
    if json_len > MAX_JSON_BYTES:
        raise _fail(f"description declares {json_len} bytes, over the {MAX_JSON_BYTES} limit")
    start = _HEADER.size
    if start + json_len > len(data):
        raise _fail(
            f"model is truncated: the description needs {json_len} bytes, "
            f"{len(data) - start} are present"
        )
    try:
        desc = json.loads(data[start : start + json_len].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _fail(f"model description is not valid JSON: {exc}") from None
    if not isinstance(desc, dict):
        raise _fail("model description must be a JSON object")
    blobs = memoryview(data)[start + json_len :]
    np = numpy_or_fail()
    weights = _weights(desc.get("weights", []), blobs, np)
    batches, hws = _gear_lists(desc)
    inputs = _tensors(desc.get("inputs"), "inputs", batches, hws)
    outputs = _tensors(desc.get("outputs"), "outputs", (), (), output=True)
    if not inputs or not outputs:
        raise _fail("a model needs at least one input and one output")
    names = [t.name for t in inputs] + [t.name for t in outputs]
    if len(set(names)) != len(names) or DYNAMIC_INPUT in names:
        raise _fail("input and output names must be unique (and not the dynamic-size input's)")
    if batches or hws:
        inputs.append(TensorSpec(DYNAMIC_INPUT, "int64", (1 if batches else 2,), FORMATS["ND"]))
    ops = _ops(desc.get("ops", []), inputs, outputs, len(weights))
    spec = ModelSpec(inputs, outputs, ops, weights, batches, hws)
    _dry_run(spec, np)
    return spec


def _int(value: object, what: str, lo: int, hi: int) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise _fail(f"{what} must be an integer {lo}..{hi}, got {value!r}")
    return value


def _weights(items: object, blobs: memoryview, np: Any) -> list[Any]:
    if not isinstance(items, list) or len(items) > MAX_OPS:
        raise _fail("'weights' must be a list of at most 256 {offset, nbytes} entries")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise _fail(f"weight {i} must be an object with offset and nbytes")
        offset = _int(item.get("offset"), f"weight {i} offset", 0, MAX_FILE_BYTES)
        nbytes = _int(item.get("nbytes"), f"weight {i} nbytes", 1, MAX_FILE_BYTES)
        if offset + nbytes > len(blobs):
            raise _fail(
                f"model is truncated: weight {i} needs bytes {offset}..{offset + nbytes}, "
                f"the file holds {len(blobs)} bytes of weights"
            )
        blob = bytes(blobs[offset : offset + nbytes])
        if not blob.startswith(b"\x93NUMPY"):
            raise _fail(f"weight {i} is not a .npy array (pickled or other data is refused)")
        try:
            array = np.load(io.BytesIO(blob), allow_pickle=False)
        except Exception as exc:  # numpy raises ValueError, EOFError, OSError, ...
            raise _fail(f"weight {i} cannot be read as a plain .npy array: {exc}") from None
        if array.dtype.name not in DTYPES or array.size > MAX_ELEMENTS:
            raise _fail(f"weight {i} has unsupported dtype {array.dtype} or is too large")
        out.append(array)
    return out


def _gear_lists(desc: dict[str, Any]) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]]:
    batch = desc.get("dynamic_batch")
    hw = desc.get("dynamic_hw")
    if batch is not None and hw is not None:
        raise _fail("a model has either dynamic_batch or dynamic_hw, not both")
    if batch is not None:
        if not isinstance(batch, list) or not 1 <= len(batch) <= MAX_GEARS:
            raise _fail("dynamic_batch must be a list of 1..100 batch sizes")
        sizes = tuple(_int(b, "a dynamic batch size", 1, 1 << 16) for b in batch)
        return tuple(sorted(set(sizes))), ()
    if hw is not None:
        if not isinstance(hw, list) or not 1 <= len(hw) <= MAX_GEARS:
            raise _fail("dynamic_hw must be a list of 1..100 [height, width] pairs")
        pairs = []
        for pair in hw:
            if not isinstance(pair, list) or len(pair) != 2:
                raise _fail("each dynamic_hw entry must be [height, width]")
            pairs.append(
                (_int(pair[0], "a height", 1, 1 << 16), _int(pair[1], "a width", 1, 1 << 16))
            )
        return (), tuple(pairs)
    return (), ()


def _tensors(
    items: object,
    what: str,
    batches: tuple[int, ...],
    hws: tuple[tuple[int, int], ...],
    output: bool = False,
) -> list[TensorSpec]:
    if not isinstance(items, list) or len(items) > MAX_TENSORS:
        raise _fail(f"'{what}' must be a list of at most {MAX_TENSORS} tensors")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise _fail(f"{what}[{i}] must be an object with name, dtype and shape")
        name = item.get("name")
        if not isinstance(name, str) or not 0 < len(name) <= 127:
            raise _fail(f"{what}[{i}] needs a name of 1..127 characters")
        dtype = item.get("dtype")
        if dtype not in DTYPES:
            raise _fail(
                f"{what}[{i}] ({name}) has unsupported dtype {dtype!r}; one of {list(DTYPES)}"
            )
        fmt_name = item.get("format", "ND")
        if fmt_name not in FORMATS:
            raise _fail(
                f"{what}[{i}] ({name}) has unknown format {fmt_name!r}; one of NCHW, NHWC, ND"
            )
        fmt = FORMATS[fmt_name]
        shape = item.get("shape")
        if not isinstance(shape, list) or len(shape) > MAX_DIMS:
            raise _fail(f"{what}[{i}] ({name}) shape must be a list of at most {MAX_DIMS} dims")
        dims = tuple(_int(d, f"{what}[{i}] ({name}) dim", -1, MAX_ELEMENTS) for d in shape)
        dynamic = [k for k, d in enumerate(dims) if d == -1]
        if dynamic and not output:
            if batches and dynamic != [0]:
                raise _fail(f"input {name}: with dynamic_batch only dim 0 may be -1")
            if hws and (fmt not in _HW_AXES or not set(dynamic) <= set(_HW_AXES[fmt])):
                raise _fail(f"input {name}: with dynamic_hw only H and W of NCHW/NHWC may be -1")
            if not batches and not hws:
                raise _fail(f"input {name} has a -1 dim but the model declares no dynamic sizes")
        itemsize = 8 if dtype in ("int64", "uint64", "float64") else 4
        if _count([d if d > 0 else 1 for d in dims]) * itemsize > MAX_TENSOR_BYTES or 0 in dims:
            raise _fail(f"{what}[{i}] ({name}) declares {list(dims)}: empty or too large")
        out.append(TensorSpec(name, dtype, dims, fmt))
    return out


def _ops(
    items: object, inputs: list[TensorSpec], outputs: list[TensorSpec], n_weights: int
) -> list[dict[str, Any]]:
    if not isinstance(items, list) or len(items) > MAX_OPS:
        raise _fail(f"'ops' must be a list of at most {MAX_OPS} operations")
    in_names = {t.name for t in inputs}
    out_names = {t.name for t in outputs}
    emitted: set[str] = set()
    ops = []
    for i, op in enumerate(items):
        if not isinstance(op, dict) or op.get("op") not in OPS:
            kind = op.get("op") if isinstance(op, dict) else op
            raise _fail(f"op {i} ({kind!r}) is not one of {', '.join(OPS)}")
        kind = op["op"]
        clean: dict[str, Any] = {"op": kind}
        if kind == "add":
            sources = [k for k in ("input", "weight", "value") if k in op]
            if len(sources) != 1:
                raise _fail(f"op {i} (add) needs exactly one of input, weight, value")
            if "input" in op:
                if op["input"] not in in_names or op["input"] == DYNAMIC_INPUT:
                    raise _fail(f"op {i} (add) names unknown input {op['input']!r}")
                clean["input"] = op["input"]
            elif "weight" in op:
                clean["weight"] = _int(op["weight"], f"op {i} weight", 0, n_weights - 1)
            else:
                clean["value"] = _number(op["value"], i)
        elif kind == "mul":
            clean["value"] = _number(op.get("value"), i)
        elif kind == "matmul":
            clean["weight"] = _int(op.get("weight"), f"op {i} weight", 0, n_weights - 1)
        elif kind in ("softmax", "argmax"):
            clean["axis"] = _int(op.get("axis", -1), f"op {i} axis", -MAX_DIMS, MAX_DIMS - 1)
        elif kind == "reshape":
            shape = op.get("shape")
            if not isinstance(shape, list) or len(shape) > MAX_DIMS:
                raise _fail(f"op {i} (reshape) shape must be a list of at most {MAX_DIMS} dims")
            clean["shape"] = [_int(d, f"op {i} reshape dim", -1, MAX_ELEMENTS) for d in shape]
        elif kind == "output":
            name = op.get("name")
            if name not in out_names or name in emitted:
                raise _fail(f"op {i} (output) names unknown or already written output {name!r}")
            emitted.add(name)
            clean["name"] = name
        ops.append(clean)
    if len(out_names - emitted) > 1:
        raise _fail(
            "more than one output is never written: use {'op': 'output', 'name': ...} for all "
            "but the last"
        )
    return ops


def _number(value: object, i: int) -> float:
    if type(value) not in (int, float) or not math.isfinite(float(value)):  # type: ignore[arg-type]
        raise _fail(f"op {i} needs a finite number, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _dry_run(spec: ModelSpec, np: Any) -> None:
    """Run the pipeline on zeros in every gear: shapes and dtypes must work out."""
    for gear in spec.gears():
        arrays = [
            np.zeros(spec.input_shape(i, gear), dtype=t.dtype)
            for i, t in enumerate(spec.data_inputs)
        ]
        try:
            results = spec.run(arrays)
        except MemoryError:
            raise _fail("the pipeline needs more memory than this host has") from None
        except (ValueError, TypeError, IndexError) as exc:  # numpy's AxisError is both
            raise _fail(f"the pipeline does not fit the declared inputs: {exc}") from None
        for k, (out, value) in enumerate(zip(spec.outputs, results)):
            if len(out.shape) != value.ndim or any(
                d != -1 and d != v for d, v in zip(out.shape, value.shape)
            ):
                raise _fail(
                    f"output {out.name!r} is computed with shape {list(value.shape)} but declared "
                    f"{list(out.shape)}"
                )
            spec.output_sizes[k] = max(spec.output_sizes[k], int(value.nbytes))


# ------------------------------------------------------------------------------ writing


def encode(
    *,
    inputs: Sequence[Sequence[Any]],
    outputs: Sequence[Sequence[Any]],
    ops: Optional[Sequence[dict[str, Any]]] = None,
    dynamic_batch: Optional[Sequence[int]] = None,
    dynamic_hw: Optional[Sequence[Sequence[int]]] = None,
) -> bytes:
    """The bytes of a model file (see :func:`ascend_safe.sim.write_model`)."""
    np = numpy_or_fail()
    desc: dict[str, Any] = {
        "inputs": [_tensor_entry(t, "input") for t in inputs],
        "outputs": [_tensor_entry(t, "output") for t in outputs],
    }
    if ops is None:
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError("ops=None (the identity) needs exactly one input and one output")
        ops = [{"op": "identity"}]
    blobs = bytearray()
    weights = []
    encoded_ops = []
    for op in ops:
        entry = dict(op)
        weight = entry.get("weight")
        if weight is not None and not isinstance(weight, int):
            buffer = io.BytesIO()
            np.save(buffer, np.ascontiguousarray(weight), allow_pickle=False)
            data = buffer.getvalue()
            weights.append({"offset": len(blobs), "nbytes": len(data)})
            blobs += data
            entry["weight"] = len(weights) - 1
        encoded_ops.append(entry)
    desc["ops"] = encoded_ops
    desc["weights"] = weights
    if dynamic_batch is not None:
        desc["dynamic_batch"] = [int(b) for b in dynamic_batch]
    if dynamic_hw is not None:
        desc["dynamic_hw"] = [[int(h), int(w)] for h, w in dynamic_hw]
    text = json.dumps(desc, separators=(",", ":")).encode("utf-8")
    data = _HEADER.pack(MAGIC, VERSION, len(text)) + text + bytes(blobs)
    try:
        parse(data)  # refuse to write a model the simulator would not load
    except ModelFileError as exc:
        raise ValueError(exc.message) from None
    return data


def _tensor_entry(item: Sequence[Any], role: str) -> dict[str, Any]:
    if not 3 <= len(item) <= 4:
        raise ValueError(f"each {role} is (name, dtype, shape) or (name, dtype, shape, format)")
    np = numpy_or_fail()
    entry: dict[str, Any] = {
        "name": str(item[0]),
        "dtype": np.dtype(item[1]).name,
        "shape": [int(d) for d in item[2]],
    }
    if len(item) == 4:
        entry["format"] = str(item[3])
    return entry
