"""Model inference with ``asf.Model`` on a model written by ``ascend_safe.sim.write_model``.

Runs on the built-in simulator (the model file is in the simulator's own, data-only format;
on an NPU you would load an ``.om`` file the same way).

Shows: the model's description as data (``inputs`` / ``outputs``, dynamic batch sizes),
synchronous execution with numpy in and out, a dynamic batch size, input checks that name the
input before pyacl is called, execution queued on a stream with outputs written into memory
of your own, and unloading at close.
"""

from __future__ import annotations

import os

os.environ.setdefault("ASCEND_SAFE_BACKEND", "sim")

import tempfile

import numpy as np

import ascend_safe as asf
from ascend_safe import sim

FEATURES, CLASSES = 8, 3


def write_classifier(path: str, weight: np.ndarray) -> None:
    """A linear classifier: scores = softmax(x @ weight), label = argmax(scores)."""
    sim.write_model(
        path,
        inputs=[("x", "float32", (-1, FEATURES))],
        outputs=[("scores", "float32", (-1, CLASSES)), ("label", "int64", (-1,))],
        ops=[
            {"op": "matmul", "weight": weight},
            {"op": "softmax"},
            {"op": "output", "name": "scores"},
            {"op": "argmax"},
        ],
        dynamic_batch=[1, 2, 4],
    )


def main() -> None:
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((FEATURES, CLASSES)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "classifier.simmdl")
        write_classifier(path, weight)

        with asf.Device(0) as dev, asf.Model(dev, path) as model:
            for info in model.inputs + model.outputs:
                print(f"{info.name}: {info.dtype} {info.shape}")
            print("batch sizes:", model.dynamic_batch)

            # Synchronous: numpy in, numpy out; the batch size is read from the input shape.
            x = rng.standard_normal((4, FEATURES)).astype(np.float32)
            scores, label = model.execute([x])
            assert np.allclose(scores.sum(axis=-1), 1.0, atol=1e-5)
            assert np.array_equal(label, np.argmax(x @ weight, axis=-1))
            print("labels:", label.tolist())

            x2 = x[:2]
            _, label2 = model.execute([x2])  # another gear of the dynamic batch
            assert np.array_equal(label2, label[:2])

            # Inputs are checked against the description before pyacl sees them.
            try:
                model.execute([np.zeros((4, FEATURES + 1), np.float32)])
            except (TypeError, ValueError) as err:
                print(f"refused ({type(err).__name__}):", err)

            # Queued on a stream, writing into memory of our own: nothing is copied back
            # until we ask, and the memory is reusable for the next batch.
            sizes = [o.size for o in model.outputs]
            with dev.stream() as s, dev.malloc(sizes[0]) as out0, \
                    dev.malloc(sizes[1]) as out1:
                model.execute([x], stream=s, outputs=[out0, out1])
                s.synchronize()
                got = out1.to_numpy(np.int64, (4,))
                assert np.array_equal(got, label)
                print("async into own memory:", got.tolist())
        print("model unloaded:", model.closed)
    print(asf.leak_report())


if __name__ == "__main__":
    main()
