"""What a model proto already says about its tensors: the shapes its value infos declare, the values its
small constants hold. Every inference layer (shapes.py) reads and compares models through these."""

from __future__ import annotations

import contextlib

import numpy as np
import onnx
from onnx import numpy_helper

# name -> (shape with None for unknown dims, or None for unknown rank; elem dtype)
Known = dict[str, tuple[tuple[int | None, ...] | None, int]]


def tensor_shapes(graph: onnx.GraphProto) -> Known:
    """Every tensor's shape and dtype as the graph's value infos and initializers give them."""
    out: Known = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        keep_better(out, vi)
    for init in graph.initializer:
        out[init.name] = (tuple(init.dims), init.data_type)
    for sparse in graph.sparse_initializer:
        out[sparse.values.name] = (tuple(sparse.dims), sparse.values.data_type)
    return out


def keep_better(known: Known, vi: onnx.ValueInfoProto) -> bool:
    """Record a value info's shape in `known` if it knows more dims than what is there; say if it did."""
    t = vi.type
    if t.WhichOneof("value") != "tensor_type":
        return False
    tt = t.tensor_type
    # bindings.declared_dims with every named dim as None: only a non-negative dim_value is known
    shape = tuple(d.dim_value if d.WhichOneof("value") == "dim_value" and d.dim_value >= 0 else None
                  for d in tt.shape.dim) if tt.HasField("shape") else None
    prev = known.get(vi.name)
    if prev is not None and not better(shape, prev[0]):
        return False
    known[vi.name] = (shape, tt.elem_type or (prev[1] if prev else 0))
    return True


def better(a, b) -> bool:
    """Shape `a` knows more dims than `b` (an unknown rank knows fewer than any)."""
    return _known_dims(a) > _known_dims(b)


def _known_dims(shape) -> int:
    if shape is None:
        return -1
    return sum(d is not None for d in shape)


def is_static(shape) -> bool:
    return shape is not None and all(isinstance(d, int) for d in shape)


def unresolved(model: onnx.ModelProto, known: Known | None = None) -> list[str]:
    """Tensors produced in the main graph whose shape is not fully static."""
    known = tensor_shapes(model.graph) if known is None else known
    bad = []
    for node in model.graph.node:
        for o in node.output:
            if not o:
                continue
            s = known.get(o, (None, 0))[0]
            if s is None or any(d is None for d in s):
                bad.append(o)
    return bad


def constant_values(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """The values a graph holds as data: initializers and Constant nodes whose payload the loader kept
    (at most loader.SMALL_TENSOR_ELEMENTS elements: shape vectors, axes, scalars)."""
    out: dict[str, np.ndarray] = {}
    tensors = [(i.name, i) for i in graph.initializer]
    tensors += [(n.output[0], a.t) for n in graph.node if n.op_type == "Constant" and n.output
                for a in n.attribute if a.name == "value"]
    for name, t in tensors:
        if t.raw_data or has_typed_data(t):
            with contextlib.suppress(Exception):  # a dtype numpy cannot hold: not a value we need
                out[name] = numpy_helper.to_array(t)
    return out


def has_typed_data(t: onnx.TensorProto) -> bool:
    return bool(t.float_data or t.int32_data or t.int64_data or t.double_data or t.uint64_data)
