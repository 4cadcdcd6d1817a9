"""Write a synthetic ONNX graph of N nodes (MatMul, Add, Relu, Mul repeating on [batch, 64]) for scale tests.

    python scripts/gen_graph.py 100000 /tmp/g100k.onnx
"""

from __future__ import annotations

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def make(n_nodes: int, width: int = 64) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.full((width, width), 0.01, np.float32), "W"),
             numpy_helper.from_array(np.zeros(width, np.float32), "b"),
             numpy_helper.from_array(np.ones(width, np.float32), "s")]
    nodes = []
    prev = "x"
    ops = [("MatMul", "W"), ("Add", "b"), ("Relu", None), ("Mul", "s")]
    for i in range(n_nodes):
        op, other = ops[i % len(ops)]
        out = f"t{i}"
        nodes.append(helper.make_node(op, [prev, other] if other else [prev], [out], name=f"n{i}"))
        prev = out
    graph = helper.make_graph(
        nodes, "synthetic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["batch", width])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


if __name__ == "__main__":
    onnx.save(make(int(sys.argv[1])), sys.argv[2])
