"""acl.mdl on the simulator: loading, descriptions, datasets, execution, checks and teardown."""

from __future__ import annotations

import io
import json
import pickle
import struct
import sys
import time
import types
from pathlib import Path
from typing import Any, Optional

import pytest

from ascend_safe import sim

np = pytest.importorskip("numpy")

GE_PARAM_INVALID = 145000
GE_PATH_INVALID = 145002
GE_MODEL_ID_INVALID = 145003
GE_LOAD_MODEL = 545001
RT_MODEL_CONTEXT = 107004
RT_PARAM_INVALID = 107000
INVALID_PARAM = 100000
H2D, D2H = 1, 2

W = (np.arange(12, dtype=np.float32).reshape(4, 3) - 5.0) / 7.0


def _mlp(tmp_path: Path) -> str:
    path = str(tmp_path / "mlp.simmdl")
    sim.write_model(
        path,
        inputs=[("x", "float32", (2, 4))],
        outputs=[("y", "float32", (2, 3))],
        ops=[{"op": "matmul", "weight": W}, {"op": "relu"}, {"op": "mul", "value": 2.0}],
    )
    return path


def _dataset(acl: types.ModuleType, sizes: list[int]) -> tuple[int, list[tuple[int, int]]]:
    ds = acl.mdl.create_dataset()
    items = []
    for size in sizes:
        ptr, ret = acl.rt.malloc(size, 2)
        assert ret == 0
        buf = acl.create_data_buffer(ptr, size)
        assert acl.mdl.add_dataset_buffer(ds, buf) == (ds, 0)
        items.append((ptr, buf))
    return ds, items


def _free_dataset(acl: types.ModuleType, ds: int, items: list[tuple[int, int]]) -> None:
    for ptr, buf in items:
        assert acl.destroy_data_buffer(buf) == 0
        assert acl.rt.free(ptr) == 0
    assert acl.mdl.destroy_dataset(ds) == 0


def _put(acl: types.ModuleType, ptr: int, array: Any) -> None:
    data = np.ascontiguousarray(array).tobytes()
    assert acl.rt.memcpy(ptr, len(data), acl.util.bytes_to_ptr(data), len(data), H2D) == 0


def _get(acl: types.ModuleType, ptr: int, dtype: Any, shape: tuple[int, ...]) -> Any:
    out = np.zeros(shape, dtype=dtype)
    assert acl.rt.memcpy(out.ctypes.data, out.nbytes, ptr, out.nbytes, D2H) == 0
    return out


def _kinds() -> list[str]:
    return [v.kind for v in sim.violations()]


# ---------------------------------------------------------------------- the official way


def test_acllite_style_program_matches_numpy(device: types.ModuleType, tmp_path: Path) -> None:
    acl = device
    model_id, ret = acl.mdl.load_from_file(_mlp(tmp_path))
    assert ret == 0
    desc = acl.mdl.create_desc()
    assert acl.mdl.get_desc(desc, model_id) == 0
    assert acl.mdl.get_num_inputs(desc) == 1 and acl.mdl.get_num_outputs(desc) == 1
    assert acl.mdl.get_input_size_by_index(desc, 0) == 32
    assert acl.mdl.get_output_size_by_index(desc, 0) == 24
    assert acl.mdl.get_input_dims(desc, 0) == ({"name": "x", "dimCount": 2, "dims": [2, 4]}, 0)
    assert acl.mdl.get_output_data_type(desc, 0) == 0
    assert acl.mdl.get_input_format(desc, 0) == 2
    assert acl.mdl.get_input_name_by_index(desc, 0) == "x"
    assert acl.mdl.get_output_index_by_name(desc, "y") == (0, 0)
    out_ds, out_items = _dataset(acl, [acl.mdl.get_output_size_by_index(desc, 0)])
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = rng.standard_normal((2, 4)).astype(np.float32)
        in_ds, in_items = _dataset(acl, [32])
        _put(acl, in_items[0][0], x)
        assert acl.mdl.execute(model_id, in_ds, out_ds) == 0
        got = _get(acl, out_items[0][0], np.float32, (2, 3))
        np.testing.assert_allclose(got, np.maximum(x @ W, 0) * 2, rtol=1e-6)
        _free_dataset(acl, in_ds, in_items)
    _free_dataset(acl, out_ds, out_items)
    assert acl.mdl.unload(model_id) == 0
    assert acl.mdl.destroy_desc(desc) == 0
    assert sim.live_handles() == {"device": [0]}
    assert sim.violations() == []


def test_execute_async_runs_on_the_stream(device: types.ModuleType, tmp_path: Path) -> None:
    acl = device
    sim.configure(model_cost_per_mb=2000.0)  # ~0.1 s for this small model
    model_id, _ = acl.mdl.load_from_file(_mlp(tmp_path))
    stream, _ = acl.rt.create_stream()
    in_ds, in_items = _dataset(acl, [32])
    out_ds, out_items = _dataset(acl, [24])
    x = np.ones((2, 4), np.float32)
    _put(acl, in_items[0][0], x)
    assert acl.rt.memset(out_items[0][0], 24, 0, 24) == 0
    assert acl.mdl.execute_async(model_id, in_ds, out_ds, stream) == 0
    assert acl.rt.stream_query(stream) == (1, 0)  # still running
    assert acl.rt.synchronize_stream(stream) == 0
    np.testing.assert_allclose(
        _get(acl, out_items[0][0], np.float32, (2, 3)), np.maximum(x @ W, 0) * 2, rtol=1e-6
    )
    _free_dataset(acl, in_ds, in_items)
    _free_dataset(acl, out_ds, out_items)
    assert acl.rt.destroy_stream(stream) == 0
    assert acl.mdl.unload(model_id) == 0
    assert sim.violations() == []


def test_load_from_mem_and_with_mem(device: types.ModuleType) -> None:
    acl = device
    data = sim.model_bytes(
        inputs=[("x", "float32", (2, 4))],
        outputs=[("y", "float32", (2, 3))],
        ops=[{"op": "matmul", "weight": W}],
    )
    model_id, ret = acl.mdl.load_from_mem(acl.util.bytes_to_ptr(data), len(data))
    assert ret == 0
    work, weight = acl.mdl.query_size_from_mem(acl.util.bytes_to_ptr(data), len(data))[:2]
    assert weight == W.nbytes and work > 0
    work_ptr, _ = acl.rt.malloc(work, 2)
    weight_ptr, _ = acl.rt.malloc(weight, 2)
    small = acl.mdl.load_from_mem_with_mem(
        acl.util.bytes_to_ptr(data), len(data), work_ptr, work - 1, weight_ptr, weight
    )
    assert small == (0, GE_PARAM_INVALID)
    second, ret = acl.mdl.load_from_mem_with_mem(
        acl.util.bytes_to_ptr(data), len(data), work_ptr, work, weight_ptr, weight
    )
    assert ret == 0 and second != model_id
    for mid in (model_id, second):
        assert acl.mdl.unload(mid) == 0
    assert acl.rt.free(work_ptr) == 0 and acl.rt.free(weight_ptr) == 0


# ---------------------------------------------------------------------- checks


def test_stale_foreign_and_double_destroy_are_violations(device: types.ModuleType) -> None:
    acl = device
    desc = acl.mdl.create_desc()
    ds = acl.mdl.create_dataset()
    assert acl.mdl.destroy_desc(desc) == 0
    assert acl.mdl.destroy_desc(desc) == INVALID_PARAM
    assert acl.mdl.get_num_inputs(desc) == 0
    assert acl.destroy_data_buffer(ds) == INVALID_PARAM  # acllite's error-path bug
    assert acl.mdl.unload(12345) == GE_MODEL_ID_INVALID
    assert acl.mdl.destroy_dataset(ds) == 0
    assert _kinds() == ["double_free", "stale_handle", "foreign_handle", "foreign_handle"]


def test_buffer_checks(device: types.ModuleType, tmp_path: Path) -> None:
    acl = device
    model_id, _ = acl.mdl.load_from_file(_mlp(tmp_path))
    small_ds, _ = _dataset(acl, [16])
    out_ds, _ = _dataset(acl, [24])
    assert acl.mdl.execute(model_id, small_ds, out_ds) == GE_PARAM_INVALID
    assert "input 0 (x)" in acl.get_recent_err_msg()
    assert acl.mdl.execute(model_id, out_ds, out_ds) == GE_PARAM_INVALID  # 24 < 32 bytes
    in_ds, ins = _dataset(acl, [32])
    assert acl.rt.free(ins[0][0]) == 0
    assert acl.mdl.execute(model_id, in_ds, out_ds) == RT_PARAM_INVALID
    assert _kinds() == ["stale_handle"]
    # memory of the other device
    assert acl.rt.set_device(1) == 0
    other, _ = acl.rt.malloc(32, 2)
    other_buf = acl.create_data_buffer(other, 32)
    assert acl.rt.set_device(0) == 0
    other_ds = acl.mdl.create_dataset()
    acl.mdl.add_dataset_buffer(other_ds, other_buf)
    assert acl.mdl.execute(model_id, other_ds, out_ds) == RT_PARAM_INVALID
    assert "device 1" in acl.get_recent_err_msg()
    assert acl.mdl.unload(model_id) == 0


def test_execute_in_another_context_follows_the_runtime(
    device: types.ModuleType, tmp_path: Path
) -> None:
    acl = device
    ctx_a, _ = acl.rt.create_context(0)
    model_id, _ = acl.mdl.load_from_file(_mlp(tmp_path))
    in_ds, _ = _dataset(acl, [32])
    out_ds, _ = _dataset(acl, [24])
    acl.rt.create_context(0)  # now current: another context on the same device
    assert acl.mdl.execute(model_id, in_ds, out_ds) == RT_MODEL_CONTEXT
    assert acl.mdl.unload(model_id) == RT_MODEL_CONTEXT
    assert acl.rt.set_context(ctx_a) == 0
    assert acl.mdl.execute(model_id, in_ds, out_ds) == 0
    assert acl.mdl.unload(model_id) == 0


def test_dynamic_batch(device: types.ModuleType, tmp_path: Path) -> None:
    acl = device
    path = str(tmp_path / "dyn.simmdl")
    sim.write_model(
        path,
        inputs=[("x", "float32", (-1, 4))],
        outputs=[("y", "int64", (-1,))],
        ops=[{"op": "matmul", "weight": W}, {"op": "softmax"}, {"op": "argmax"}],
        dynamic_batch=[1, 2, 4],
    )
    model_id, _ = acl.mdl.load_from_file(path)
    desc = acl.mdl.create_desc()
    acl.mdl.get_desc(desc, model_id)
    assert acl.mdl.get_dynamic_batch(desc) == ({"batchCount": 3, "batch": [1, 2, 4]}, 0)
    index, ret = acl.mdl.get_input_index_by_name(desc, "ascend_mbatch_shape_data")
    assert (index, ret) == (1, 0)
    assert acl.mdl.get_input_dims(desc, 0)[0]["dims"] == [-1, 4]
    in_ds, ins = _dataset(acl, [acl.mdl.get_input_size_by_index(desc, i) for i in range(2)])
    out_ds, outs = _dataset(acl, [acl.mdl.get_output_size_by_index(desc, 0)])
    assert acl.mdl.execute(model_id, in_ds, out_ds) == GE_PARAM_INVALID  # batch never set
    assert acl.mdl.set_dynamic_batch_size(model_id, in_ds, index, 3) == GE_PARAM_INVALID
    assert acl.mdl.set_dynamic_batch_size(model_id, in_ds, index, 2) == 0
    x = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
    _put(acl, ins[0][0], x)
    assert acl.mdl.execute(model_id, in_ds, out_ds) == 0
    assert acl.mdl.get_cur_output_dims(desc, 0)[0]["dims"] == [2]
    np.testing.assert_array_equal(_get(acl, outs[0][0], np.int64, (2,)), np.argmax(x @ W, -1))
    assert acl.mdl.unload(model_id) == 0
    assert acl.mdl.destroy_desc(desc) == 0


def test_finalize_releases_models_with_a_teardown_violation(
    device: types.ModuleType, tmp_path: Path
) -> None:
    acl = device
    acl.mdl.load_from_file(_mlp(tmp_path))
    acl.mdl.create_desc()
    acl.media.dvpp_create_pic_desc()
    assert acl.rt.reset_device(0) == 0
    assert "1 model(s)" in sim.violations()[0].detail
    assert acl.finalize() == 0
    assert sim.live_handles() == {}
    assert _kinds() == ["teardown_order", "teardown_order"]
    assert acl.init() == 0 and acl.rt.set_device(0) == 0  # for the fixture's teardown


# ---------------------------------------------------------------------- hostile files


def _raw(desc: dict[str, Any], blobs: bytes = b"") -> bytes:
    text = json.dumps(desc).encode()
    return struct.pack("<8sII", b"ASFSIMMD", 1, len(text)) + text + blobs


GOOD = {
    "inputs": [{"name": "x", "dtype": "float32", "shape": [2]}],
    "outputs": [{"name": "y", "dtype": "float32", "shape": [2]}],
}


def _npy(array: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


HOSTILE = {
    "empty": b"",
    "truncated header": b"ASFSIMMD\x01\x00",
    "real om": b"IMOD" + bytes(200),
    "truncated description": _raw(GOOD)[:-5],
    "huge declared json": struct.pack("<8sII", b"ASFSIMMD", 1, 0xFFFFFFFF),
    "not json": struct.pack("<8sII", b"ASFSIMMD", 1, 3) + b"{x]",
    "huge shape": _raw(
        {**GOOD, "inputs": [{"name": "x", "dtype": "float32", "shape": [1 << 20, 1 << 20]}]}
    ),
    "unknown op": _raw({**GOOD, "ops": [{"op": "system", "cmd": "rm -rf /"}]}),
    "wrong dtype": _raw({**GOOD, "inputs": [{"name": "x", "dtype": "object", "shape": [2]}]}),
    "lossy output dtype": _raw(
        {**GOOD, "outputs": [{"name": "y", "dtype": "int32", "shape": [2]}]}
    ),
    "shape mismatch": _raw({**GOOD, "outputs": [{"name": "y", "dtype": "float32", "shape": [3]}]}),
    "weight past the end": _raw(
        {**GOOD, "weights": [{"offset": 0, "nbytes": 1 << 20}], "ops": [{"op": "add", "weight": 0}]}
    ),
    "pickled weight": _raw(
        {
            **GOOD,
            "weights": [{"offset": 0, "nbytes": len(pickle.dumps([1.0, 2.0]))}],
            "ops": [{"op": "add", "weight": 0}],
        },
        pickle.dumps([1.0, 2.0]),
    ),
    "object npy weight": _raw(
        {
            **GOOD,
            "weights": [{"offset": 0, "nbytes": len(_npy(np.array([1, "a"], dtype=object)))}],
            "ops": [{"op": "add", "weight": 0}],
        },
        _npy(np.array([1, "a"], dtype=object)),
    ),
    "huge intermediate": _raw(
        {
            "inputs": [{"name": "x", "dtype": "float32", "shape": [1 << 15, 1]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": [1 << 15, 1]}],
            "weights": [{"offset": 0, "nbytes": len(_npy(np.zeros((1, 1 << 15), np.float32)))}],
            "ops": [{"op": "matmul", "weight": 0}],
        },
        _npy(np.zeros((1, 1 << 15), np.float32)),
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_model_files_are_refused(
    device: types.ModuleType, tmp_path: Path, name: str
) -> None:
    acl = device
    path = tmp_path / "bad.simmdl"
    path.write_bytes(HOSTILE[name])
    assert acl.mdl.load_from_file(str(path)) == (0, GE_LOAD_MODEL)
    message = acl.get_recent_err_msg()
    assert message and "cannot load" in message
    data = HOSTILE[name] or b"\0"
    assert acl.mdl.load_from_mem(acl.util.bytes_to_ptr(data), len(data))[1] in (
        GE_LOAD_MODEL,
        GE_PARAM_INVALID,
    )
    assert "model" not in sim.live_handles()


def test_models_need_numpy(
    device: types.ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _mlp(tmp_path)
    monkeypatch.setitem(sys.modules, "numpy", None)  # import numpy now fails
    assert device.mdl.load_from_file(path) == (0, GE_LOAD_MODEL)
    assert "need numpy" in device.get_recent_err_msg()


def test_missing_file(device: types.ModuleType, tmp_path: Path) -> None:
    assert device.mdl.load_from_file(str(tmp_path / "nope")) == (0, GE_PATH_INVALID)


def test_write_model_refuses_what_would_not_load(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="declared"):
        sim.write_model(
            tmp_path / "m",
            inputs=[("x", "float32", (2, 4))],
            outputs=[("y", "float32", (2, 4))],
            ops=[{"op": "matmul", "weight": W}],
        )


# ---------------------------------------------------------------------- descriptor pairs


def test_descriptor_pairs(device: types.ModuleType) -> None:
    acl = device
    from ascend_safe.sim._media import DESCRIPTOR_PAIRS

    args: dict[Optional[str], tuple[Any, ...]] = {
        None: (),
        "I": (4,),
        "IIII": (0, 10, 0, 10),
        "K": (1,),
        "iOi": (0, [1, 2], 2),
    }
    for pair in DESCRIPTOR_PAIRS:
        create = acl
        for part in pair.create.split("."):
            create = getattr(create, part)
        destroy = acl
        for part in pair.destroy.split("."):
            destroy = getattr(destroy, part)
        handle = create(*args[pair.create_fmt])
        assert handle and sim.live_handles()[pair.kind] == [handle]
        ok = None if pair.destroy_returns_none else 0
        assert destroy(handle) == ok
        assert pair.kind not in sim.live_handles()
        destroy(handle)  # double destroy
        assert _kinds()[-1] == "double_free"
    assert acl.media.dvpp_destroy_pic_desc(acl.op.create_attr()) == INVALID_PARAM
    assert _kinds()[-1] == "foreign_handle"


def test_models_on_two_streams_overlap(device: types.ModuleType, tmp_path: Path) -> None:
    acl = device
    sim.configure(model_cost_per_mb=1500.0)  # about 0.1 s per execution of this model
    model_id, _ = acl.mdl.load_from_file(_mlp(tmp_path))
    streams = [acl.rt.create_stream()[0] for _ in range(2)]
    sets = [(_dataset(acl, [32]), _dataset(acl, [24])) for _ in streams]
    started = time.perf_counter()
    for stream, ((ids, _), (ods, _)) in zip(streams, sets):
        assert acl.mdl.execute_async(model_id, ids, ods, stream) == 0
    for stream in streams:
        assert acl.rt.synchronize_stream(stream) == 0
    both = time.perf_counter() - started
    started = time.perf_counter()
    (ids, _), (ods, _) = sets[0]
    assert acl.mdl.execute(model_id, ids, ods) == 0
    one = time.perf_counter() - started
    assert one > 0.05 and both < 1.6 * one  # the two ran at the same time, not one after another
    for stream in streams:
        acl.rt.destroy_stream(stream)
    acl.mdl.unload(model_id)
