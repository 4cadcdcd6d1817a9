"""Reading an .onnx file: graph structure and tensor metadata only, never weight data.

External data is never resolved (`load_external_data=False`), and every reference to it is dropped from the
in-memory copy before anything else sees it, so no path the model names can be opened by us or by a library
we call. Large inline initializers lose their payload for the same reason: dims and dtype are all we need.
"""

from __future__ import annotations

import os

import onnx
import onnx.inliner
from google.protobuf.message import DecodeError
from onnx import TensorProto

from .errors import HwUtilError
from .limits import MAX_DEPTH, MAX_NODES

# Initializers up to this many elements keep their values: shape constants, axes, scalars, trip counts.
SMALL_TENSOR_ELEMENTS = 1024
_DATA_FIELDS = ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data",
                "string_data")


def load_model(path: str | os.PathLike) -> onnx.ModelProto:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise HwUtilError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise HwUtilError(f"{path}: not a regular file")
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise HwUtilError(f"{path}: cannot read: {e.strerror}") from None
    if not blob:
        raise HwUtilError(f"{path}: empty file, not an ONNX model")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(blob)
    except (DecodeError, RuntimeError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise HwUtilError(f"{path}: not a valid ONNX model (protobuf parse failed: {reason}); "
                          "the file may be truncated or of another format") from None
    del blob
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise HwUtilError(f"{path}: not a valid ONNX model (no graph; the file may be truncated or of "
                          "another format)")
    if not model.graph.node:
        raise HwUtilError(f"{path}: the graph has no nodes, nothing to analyze")
    check_size(model.graph, path)
    strip_weights(model.graph)
    if model.functions:  # model-local functions: costed through their bodies, as a runtime runs them
        try:
            model = onnx.inliner.inline_local_functions(model)
        except Exception as e:  # onnx's inliner raises its own zoo of types
            reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
            raise HwUtilError(f"{path}: its model-local functions cannot be expanded ({reason})") from None
        check_size(model.graph, path)
    return model


def _subgraphs(graph: onnx.GraphProto):
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield attr.g
            elif attr.type == onnx.AttributeProto.GRAPHS:
                yield from attr.graphs


def check_size(graph: onnx.GraphProto, path: str) -> None:
    """Refuse graphs beyond any real model (see `limits`) before doing any work on them."""
    nodes = 0
    stack = [(graph, 0)]
    while stack:
        g, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise HwUtilError(f"{path}: subgraphs nested more than {MAX_DEPTH} deep "
                              "(set ONNX_HWUTIL_MAX_DEPTH to raise the limit)")
        nodes += len(g.node)
        if nodes > MAX_NODES:
            raise HwUtilError(f"{path}: more than {MAX_NODES:,} nodes, beyond any real model "
                              "(set ONNX_HWUTIL_MAX_NODES to raise the limit)")
        stack.extend((sub, depth + 1) for sub in _subgraphs(g))
        names = [v.name for v in (*g.input, *g.output, *g.value_info, *g.initializer)]
        for n in g.node:
            names += [n.op_type, n.domain, n.name, *n.input, *n.output]
        if not all(isinstance(s, str) for s in names):  # protobuf hands back bytes for invalid UTF-8
            raise HwUtilError(f"{path}: names in the graph are not valid UTF-8; the file is corrupt")
        for t in g.initializer:
            if any(d < 0 for d in t.dims):
                raise HwUtilError(f"{path}: initializer {t.name!r} has a negative dim {list(t.dims)}")


def strip_weights(graph: onnx.GraphProto) -> None:
    """Drop weight payloads and external-data references, here and in every nested subgraph."""
    stack = [graph]
    while stack:
        g = stack.pop()
        for init in g.initializer:
            _strip_tensor(init)
        for sparse in g.sparse_initializer:
            _strip_tensor(sparse.values)
            _strip_tensor(sparse.indices)
        for node in g.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    _strip_tensor(attr.t)
                elif attr.type == onnx.AttributeProto.SPARSE_TENSOR:
                    _strip_tensor(attr.sparse_tensor.values)
                    _strip_tensor(attr.sparse_tensor.indices)
        stack.extend(_subgraphs(g))


def _strip_tensor(t: TensorProto) -> None:
    external = t.data_location == TensorProto.EXTERNAL or len(t.external_data) > 0
    numel = 1
    for d in t.dims:
        numel *= d
    if external or numel > SMALL_TENSOR_ELEMENTS:
        for field in _DATA_FIELDS:
            t.ClearField(field)
        t.ClearField("external_data")
        t.data_location = TensorProto.DEFAULT
