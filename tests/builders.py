"""Small ONNX models built in the tests with onnx.helper: every case states its own expected numbers."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]


def vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def init(name, shape, dtype=np.float32, value=None):
    arr = np.zeros(shape, dtype=dtype) if value is None else np.asarray(value, dtype=dtype)
    return numpy_helper.from_array(arr, name)


def rand(shape, seed):
    """Reproducible float32 values: weights an optimizer cannot take for zeros or ones."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def model(nodes, inputs, outputs, inits=(), opset=OPSET, **kw):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits), **kw)
    m = helper.make_model(g, opset_imports=opset)
    m.ir_version = 8
    return m


def save(m: onnx.ModelProto, path) -> str:
    onnx.save(m, str(path))
    return str(path)


def conv_relu(batch="N"):
    """x[N,3,32,32] -> Conv 3->8 k3 pad1 (+bias) -> Relu."""
    return model(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                          name="conv"),
         helper.make_node("Relu", ["c"], ["y"], name="relu")],
        [vi("x", T.FLOAT, [batch, 3, 32, 32])], [vi("y", T.FLOAT, [batch, 8, 32, 32])],
        [init("w", (8, 3, 3, 3)), init("b", (8,))])
