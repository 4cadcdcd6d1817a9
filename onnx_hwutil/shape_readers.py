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
    for vi in (*graph.input, *graph.value_info, *graph.output):
        keep_better(out, vi)
    for init in graph.initializer:
        out[init.name] = (tuple(init.dims), init.data_type)
    for sparse in graph.sparse_initializer:
        out[sparse.values.name] = (tuple(sparse.dims), sparse.values.data_type)
    return out


def keep_better(known: Known, vi: onnx.ValueInfoProto) -> bool:
    """Record a value info's shape in `known` if it knows more dims than what is there; say if it did."""
    info = _type_info(vi.type)
    if info is None:
        return False
    shape, elem_type = info
    prev = known.get(vi.name)
    if prev is not None and not better(shape, prev[0]):
        return False
    known[vi.name] = (shape, elem_type or (prev[1] if prev else 0))
    return True


# A serialized TypeProto -> (shape, elem dtype), or None for a type that is not a tensor: most tensors of a
# graph share a handful of types, and reading a type's dims through protobuf costs ten times serializing it.
_TYPES: dict[bytes, tuple | None] = {}
_TYPES_MAX = 100_000


def _type_info(t: onnx.TypeProto) -> tuple | None:
    key = t.SerializeToString()
    if key in _TYPES:
        return _TYPES[key]
    info = None
    if t.WhichOneof("value") == "tensor_type":
        tt = t.tensor_type
        # bindings.declared_dims with every named dim as None: only a non-negative dim_value is known
        info = (tuple([_dim(d) for d in tt.shape.dim]) if tt.HasField("shape") else None, tt.elem_type)
    if len(_TYPES) >= _TYPES_MAX:
        _TYPES.clear()
    _TYPES[key] = info
    return info


def _dim(d: onnx.TensorShapeProto.Dimension) -> int | None:
    v = d.dim_value  # 0 where unset or named: only then is the oneof asked
    if v > 0:
        return v
    return 0 if v == 0 and d.WhichOneof("value") == "dim_value" else None


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
    get = known.get
    for node in model.graph.node:
        for o in node.output:
            if o:
                k = get(o)
                if k is None or k[0] is None or None in k[0]:  # dims are ints or None
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
