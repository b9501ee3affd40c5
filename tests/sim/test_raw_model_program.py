"""A model driven with raw pyacl calls the way the official helper code does, after install()."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ascend_safe import sim

np = pytest.importorskip("numpy")

ACL_SUCCESS = 0
ACL_MEM_MALLOC_NORMAL_ONLY = 2
ACL_MEMCPY_HOST_TO_DEVICE = 1
ACL_MEMCPY_DEVICE_TO_HOST = 2
NPY_FLOAT32 = 11
W = np.linspace(-1, 1, 32, dtype=np.float32).reshape(8, 4)


def check_ret(message: str, ret: int) -> None:
    if ret != ACL_SUCCESS:
        raise Exception(f"{message} failed ret={ret}")


class RawModel:
    """Load, describe, keep an output dataset, build an input dataset per run, tear down."""

    def __init__(self, path: str) -> None:
        import acl

        self.acl = acl
        self.model_id, ret = acl.mdl.load_from_file(path)
        check_ret("acl.mdl.load_from_file", ret)
        self.desc = acl.mdl.create_desc()
        check_ret("acl.mdl.get_desc", acl.mdl.get_desc(self.desc, self.model_id))
        self.output_dataset = acl.mdl.create_dataset()
        self.outputs: list[tuple[int, int]] = []
        for i in range(acl.mdl.get_num_outputs(self.desc)):
            size = acl.mdl.get_output_size_by_index(self.desc, i)
            ptr, ret = acl.rt.malloc(size, ACL_MEM_MALLOC_NORMAL_ONLY)
            check_ret("acl.rt.malloc", ret)
            buf = acl.create_data_buffer(ptr, size)
            _, ret = acl.mdl.add_dataset_buffer(self.output_dataset, buf)
            check_ret("acl.mdl.add_dataset_buffer", ret)
            self.outputs.append((ptr, size))

    def execute(self, arrays: list[Any]) -> list[Any]:
        acl = self.acl
        dataset = acl.mdl.create_dataset()
        staged = []
        for array in arrays:
            size = array.nbytes
            ptr, ret = acl.rt.malloc(size, ACL_MEM_MALLOC_NORMAL_ONLY)
            check_ret("acl.rt.malloc", ret)
            data = array.tobytes()
            host = acl.util.bytes_to_ptr(data)
            check_ret(
                "acl.rt.memcpy", acl.rt.memcpy(ptr, size, host, size, ACL_MEMCPY_HOST_TO_DEVICE)
            )
            buf = acl.create_data_buffer(ptr, size)
            _, ret = acl.mdl.add_dataset_buffer(dataset, buf)
            check_ret("acl.mdl.add_dataset_buffer", ret)
            staged.append(ptr)
        check_ret("acl.mdl.execute", acl.mdl.execute(self.model_id, dataset, self.output_dataset))
        results = []
        for i, (ptr, size) in enumerate(self.outputs):
            dims, ret = acl.mdl.get_cur_output_dims(self.desc, i)
            check_ret("acl.mdl.get_cur_output_dims", ret)
            host, ret = acl.rt.malloc_host(size)
            check_ret("acl.rt.malloc_host", ret)
            check_ret(
                "acl.rt.memcpy", acl.rt.memcpy(host, size, ptr, size, ACL_MEMCPY_DEVICE_TO_HOST)
            )
            results.append(acl.util.ptr_to_numpy(host, tuple(dims["dims"]), NPY_FLOAT32).copy())
            check_ret("acl.rt.free_host", acl.rt.free_host(host))
        for i in range(acl.mdl.get_dataset_num_buffers(dataset)):
            check_ret(
                "acl.destroy_data_buffer",
                acl.destroy_data_buffer(acl.mdl.get_dataset_buffer(dataset, i)),
            )
        for ptr in staged:
            check_ret("acl.rt.free", acl.rt.free(ptr))
        check_ret("acl.mdl.destroy_dataset", acl.mdl.destroy_dataset(dataset))
        return results

    def destroy(self) -> None:
        acl = self.acl
        for i in range(acl.mdl.get_dataset_num_buffers(self.output_dataset)):
            buf = acl.mdl.get_dataset_buffer(self.output_dataset, i)
            check_ret("acl.rt.free", acl.rt.free(acl.get_data_buffer_addr(buf)))
            check_ret("acl.destroy_data_buffer", acl.destroy_data_buffer(buf))
        check_ret("acl.mdl.destroy_dataset", acl.mdl.destroy_dataset(self.output_dataset))
        check_ret("acl.mdl.unload", acl.mdl.unload(self.model_id))
        check_ret("acl.mdl.destroy_desc", acl.mdl.destroy_desc(self.desc))


def _program(path: str, batches: list[Any]) -> list[Any]:
    import acl

    check_ret("acl.init", acl.init())
    check_ret("acl.rt.set_device", acl.rt.set_device(0))
    context, ret = acl.rt.create_context(0)
    check_ret("acl.rt.create_context", ret)
    model = RawModel(path)
    outputs = [model.execute([batch])[0] for batch in batches]
    model.destroy()
    check_ret("acl.rt.destroy_context", acl.rt.destroy_context(context))
    check_ret("acl.rt.reset_device", acl.rt.reset_device(0))
    check_ret("acl.finalize", acl.finalize())
    return outputs


def test_helper_style_program_runs_on_the_simulator(tmp_path: Path) -> None:
    path = str(tmp_path / "classifier.simmdl")
    sim.write_model(
        path,
        inputs=[("image", "float32", (3, 8))],
        outputs=[("prob", "float32", (3, 4))],
        ops=[{"op": "matmul", "weight": W}, {"op": "softmax"}],
    )
    rng = np.random.default_rng(5)
    batches = [rng.standard_normal((3, 8)).astype(np.float32) for _ in range(3)]
    sim.install()
    try:
        outputs = _program(path, batches)
    finally:
        sim.uninstall()
    for batch, prob in zip(batches, outputs):
        logits = batch @ W
        e = np.exp(logits - logits.max(-1, keepdims=True))
        np.testing.assert_allclose(prob, e / e.sum(-1, keepdims=True), rtol=1e-5)
    assert sim.live_handles() == {}
    assert sim.violations() == []
