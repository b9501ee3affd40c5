"""Model, Dataset and create/destroy pairs: results, checks, ordered teardown, faults, threads."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import ascend_safe as asf
from ascend_safe import handles

np = pytest.importorskip("numpy")

W = (np.arange(12, dtype=np.float32).reshape(4, 3) - 5.0) / 7.0
B = np.array([0.5, -0.25, 1.0], dtype=np.float32)


def _reference(x: Any) -> Any:
    return np.maximum(x @ W + B, 0) * 2


@pytest.fixture
def mlp(tmp_path: Path, sim: Any) -> str:
    path = str(tmp_path / "mlp.simmdl")
    sim.write_model(
        path,
        inputs=[("x", "float32", (2, 4))],
        outputs=[("y", "float32", (2, 3)), ("label", "int32", (2,))],
        ops=[
            {"op": "matmul", "weight": W},
            {"op": "add", "weight": B},
            {"op": "relu"},
            {"op": "mul", "value": 2.0},
            {"op": "output", "name": "y"},
            {"op": "argmax"},
        ],
    )
    return path


def test_description_and_results_match_numpy(sim: Any, mlp: str) -> None:
    rng = np.random.default_rng(0)
    with asf.Device(0) as dev, asf.Model(dev, mlp) as model:
        assert [(i.name, i.dtype, i.shape, i.size) for i in model.inputs] == [
            ("x", np.dtype("float32"), (2, 4), 32)
        ]
        assert [(o.name, o.dtype, o.shape, o.size) for o in model.outputs] == [
            ("y", np.dtype("float32"), (2, 3), 24),
            ("label", np.dtype("int32"), (2,), 8),
        ]
        sim.reset_call_counts()
        for _ in range(4):
            x = rng.standard_normal((2, 4)).astype(np.float32)
            y, label = model.execute([x])
            np.testing.assert_allclose(y, _reference(x), rtol=1e-6)
            np.testing.assert_array_equal(label, np.argmax(_reference(x), -1))
        counts = sim.call_counts()
        assert counts["mdl.execute"] == 4
        assert "rt.malloc" not in counts and "create_data_buffer" not in counts  # reused
    assert sim.live_handles() == {}


def test_async_execute_fills_arrays_when_the_stream_completes(sim: Any, mlp: str) -> None:
    sim.configure(model_cost_per_mb=3000.0)
    x = np.ones((2, 4), np.float32)
    with asf.Device(0) as dev, asf.Model(dev, mlp) as model, dev.stream() as stream:
        y, _label = model.execute([x], stream=stream)
        assert not y.any()  # not filled yet: the model takes time on the stream
        x[:] = 7  # the input was staged at the call; changing it now changes nothing
        stream.synchronize()
        np.testing.assert_allclose(y, _reference(np.ones((2, 4), np.float32)), rtol=1e-6)
        # a synchronous call after async work on the same memory sees its own inputs
        (y2, _) = model.execute([x])
        np.testing.assert_allclose(y2, _reference(x), rtol=1e-6)


def test_memory_inputs_and_outputs(sim: Any, mlp: str) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    with asf.Device(0) as dev, asf.Model(dev, mlp) as model:
        src = dev.malloc(64)
        src.copy_from(x)
        out_y, out_label = dev.malloc(24), dev.malloc(8)
        result = model.execute([src], outputs=[out_y, out_label])
        assert result == [out_y, out_label]
        np.testing.assert_allclose(out_y.to_numpy("float32", (2, 3)), _reference(x), rtol=1e-6)


def test_checks_name_the_input(sim: Any, mlp: str) -> None:
    with asf.Device(0) as dev, asf.Model(dev, mlp) as model:
        with pytest.raises(ValueError, match=r"takes 1 input\(s\) \(x\), got 2"):
            model.execute([np.zeros((2, 4), np.float32)] * 2)
        with pytest.raises(TypeError, match="input 'x' must have dtype float32, got float64"):
            model.execute([np.zeros((2, 4))])
        with pytest.raises(ValueError, match=r"input 'x' must have shape \[2, 4\], got \[4, 2\]"):
            model.execute([np.zeros((4, 2), np.float32)])
        with pytest.raises(ValueError, match="input 'x' needs 32 bytes"):
            model.execute([dev.malloc(16)])
        with pytest.raises(ValueError, match="no dynamic batch"):
            model.execute([np.zeros((2, 4), np.float32)], batch_size=2)
        assert sim.call_counts().get("mdl.execute", 0) == 0
    with pytest.raises(asf.ResourceClosedError):
        model.execute([np.zeros((2, 4), np.float32)])
    with pytest.raises(asf.ResourceClosedError):
        _ = model.inputs


def test_device_close_unloads_models_first(sim: Any, mlp: str) -> None:
    dev = asf.Device(0)
    ctx = asf.Context(dev)
    model = asf.Model(ctx, mlp)
    user_memory = asf.DeviceMemory(ctx, 64)
    pic = asf.create_handle(ctx, "dvpp_pic_desc")
    assert {type(r).__name__ for r in asf.live_resources()} >= {"Model", "DvppPicDescHandle"}
    dev.close()
    assert model.closed and user_memory.closed and pic.closed and ctx.closed
    assert sim.live_handles() == {}
    assert sim.violations() == []


def test_load_from_bytes_and_other_context(sim: Any) -> None:
    data = sim.model_bytes(inputs=[("x", "int32", (3,))], outputs=[("y", "int32", (3,))])
    with asf.Device(0) as dev:
        ctx = asf.Context(dev)
        model = asf.Model(ctx, data)
        asf.Context(dev)  # another context, now current in this thread
        (y,) = model.execute([np.array([1, 2, 3], np.int32)])  # the model's context is made current
        assert y.tolist() == [1, 2, 3]
        model.close()
    assert sim.violations() == []


def test_dynamic_batch_is_a_parameter(sim: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "dyn.simmdl")
    sim.write_model(
        path,
        inputs=[("x", "float32", (-1, 4))],
        outputs=[("p", "float32", (-1, 3))],
        ops=[{"op": "matmul", "weight": W}, {"op": "softmax"}],
        dynamic_batch=[1, 2, 4],
    )
    with asf.Device(0) as dev, asf.Model(dev, path) as model:
        assert model.dynamic_batch == (1, 2, 4)
        assert [i.name for i in model.inputs] == ["x"]
        for batch in (4, 1, 2):
            x = np.random.default_rng(batch).standard_normal((batch, 4)).astype(np.float32)
            (p,) = model.execute([x])
            e = np.exp(x @ W - (x @ W).max(-1, keepdims=True))
            np.testing.assert_allclose(p, e / e.sum(-1, keepdims=True), rtol=1e-5)
        with dev.stream() as stream:
            (p,) = model.execute([np.ones((2, 4), np.float32)], stream=stream, batch_size=2)
            stream.synchronize()
            assert p.shape == (2, 3)
        with pytest.raises(ValueError, match="batch size 3 is not one of"):
            model.execute([np.ones((3, 4), np.float32)])


def test_threads_sharing_a_model(sim: Any, mlp: str) -> None:
    errors: list[BaseException] = []
    with asf.Device(0) as dev, asf.Model(dev, mlp) as model:

        def work(seed: int) -> None:
            try:
                rng = np.random.default_rng(seed)
                for _ in range(20):
                    x = rng.standard_normal((2, 4)).astype(np.float32)
                    y, _ = model.execute([x])
                    np.testing.assert_allclose(y, _reference(x), rtol=1e-6)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def test_dataset_owns_its_buffers(sim: Any) -> None:
    with asf.Device(0) as dev:
        memory = dev.malloc(64)
        ds = asf.Dataset(dev, [asf.DataBuffer(memory, 32), asf.DataBuffer(memory, 64)])
        assert len(ds) == 2 and len(sim.live_handles()["data_buffer"]) == 2
        buffers = ds.buffers
        ds.close()
        assert all(b.closed for b in buffers) and not memory.closed
        assert "data_buffer" not in sim.live_handles() and "dataset" not in sim.live_handles()
        with pytest.raises(asf.ResourceClosedError):
            ds.add(asf.DataBuffer(memory))


def test_every_pair_goes_through_handles(sim: Any) -> None:
    from ascend_safe.sim._media import DESCRIPTOR_PAIRS

    sim_pairs = {(p.create, p.destroy) for p in DESCRIPTOR_PAIRS}
    sim_pairs |= {("mdl.create_desc", "mdl.destroy_desc")}
    sim_pairs |= {("mdl.create_dataset", "mdl.destroy_dataset")}
    assert {(p.create, p.destroy) for p in handles.PAIRS.values()} == sim_pairs
    args = {"dvpp_batch_pic_desc": (4,), "dvpp_roi_config": (0, 8, 0, 8), "aipp": (1,)}
    args["tensor_desc"] = (0, [2, 3], 2)
    with asf.Device(0) as dev:
        made = [asf.create_handle(dev, name, *args.get(name, ())) for name in handles.PAIRS]
        assert len(sim.live_handles()) == 1 + len(handles.PAIRS)  # and the device
        report = asf.leak_report()
        assert "DvppPicDescHandle" in report and "TensorDescHandle" in report
        made[0].close()
        made[0].close()
        with pytest.raises(asf.ResourceClosedError):
            _ = made[0].handle
    assert all(h.closed for h in made)
    with pytest.raises(ValueError, match="unknown create/destroy pair"):
        asf.create_handle(dev, "nope")


# ---------------------------------------------------------------------- a fault at every call


def _scenario(path: str) -> None:
    with asf.Device(0) as dev:
        ctx = asf.Context(dev)
        with asf.Model(ctx, path) as model, asf.Stream(ctx) as stream:
            x = np.ones((2, 4), np.float32)
            model.execute([x])
            model.execute([x], stream=stream)
            stream.synchronize()
        ctx.close()


def test_fault_at_every_model_call_leaves_nothing(sim: Any, mlp: str) -> None:
    from ascend_safe import _runtime

    sim.reset_call_counts()
    _scenario(mlp)
    skip = {"get_recent_err_msg", "get_soc_name"}  # see test_faults.py
    counts = {k: v for k, v in sim.call_counts().items() if k not in skip}
    assert {"mdl.load_from_file", "mdl.execute", "mdl.execute_async", "mdl.unload"} <= set(counts)
    cases = [(api, n) for api, total in sorted(counts.items()) for n in range(total)]
    assert len(cases) > 20
    for api, after in cases:
        sim.reset()
        _runtime.forget_initialization()
        sim.inject_fault(api, 500003, after=after)
        try:
            _scenario(mlp)
        except Exception:
            pass
        sim.clear_faults()
        for root in asf.live_resources()[::-1]:
            if root._parent is None:
                root.close()
        assert sim.live_handles() == {}, (api, after, sim.live_handles())
        assert sim.violations() == [], (api, after, sim.violations())


def test_dynamic_image_size_is_a_parameter(sim: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "hw.simmdl")
    sim.write_model(
        path,
        inputs=[("image", "uint8", (1, 3, -1, -1), "NCHW")],
        outputs=[("scaled", "float32", (1, 3, -1, -1))],
        ops=[{"op": "mul", "value": 3}],
        dynamic_hw=[[4, 6], [8, 8]],
    )
    with asf.Device(0) as dev, asf.Model(dev, path) as model:
        assert model.dynamic_hw == ((4, 6), (8, 8))
        for h, w in ((8, 8), (4, 6)):
            image = np.arange(3 * h * w, dtype=np.uint8).reshape(1, 3, h, w)
            (scaled,) = model.execute([image])
            assert scaled.shape == (1, 3, h, w)
            np.testing.assert_array_equal(scaled, (image * np.uint8(3)).astype(np.float32))
        with pytest.raises(ValueError, match=r"image size \(5, 5\) is not one of"):
            model.execute([np.zeros((1, 3, 5, 5), np.uint8)])


def test_a_model_dropped_while_open_warns_and_is_released(sim: Any, mlp: str) -> None:
    import gc

    with asf.Device(0) as dev:

        def use_and_drop() -> None:
            model = asf.Model(dev, mlp)
            model.execute([np.zeros((2, 4), np.float32)])

        with pytest.warns(ResourceWarning, match="unclosed <Model"):
            use_and_drop()
            gc.collect()
        assert asf.live_resources() == [dev]
        assert "model" not in sim.live_handles()
