"""Reading an .onnx file: graph structure and tensor metadata only, never weight data.

External data is never resolved (`load_external_data=False`), and every reference to it is dropped from the
in-memory copy before anything else sees it, so no path the model names can be opened by us or by a library
we call. Large inline initializers lose their payload for the same reason: dims and dtype are all we need.
"""

from __future__ import annotations

import mmap
import os
from itertools import repeat

import onnx
import onnx.inliner
from google.protobuf.message import DecodeError
from onnx import TensorProto

from .errors import HwUtilError
from .limits import MAX_DEPTH, MAX_FILE_BYTES, MAX_NAME_CHARS, MAX_NODES
from .skim import skim

# Inlining model-local functions may multiply the nodes on disk by at most this much.
FUNCTION_GROWTH = 100
# Any model may inline to this many nodes, however small on disk: the largest published exports have about
# 10^5 nodes (limits.MAX_NODES), and a tiny file that calls a function twice per level cannot get there.
INLINED_NODES_ALWAYS_ALLOWED = 100_000
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
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:  # read nothing: protobuf cannot parse it anyway
        raise HwUtilError(f"{path}: {size:,} bytes, over protobuf's 2 GiB limit for one ONNX file; a model "
                          "this large keeps its weights as external data")
    if size == 0:
        raise HwUtilError(f"{path}: empty file, not an ONNX model")
    model = onnx.ModelProto()
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            # Large payloads cut out before parsing (skim.py): their pages are never even read. What the
            # skim does not recognize, or what fails to parse after it, protobuf parses whole and judges.
            skimmed = skim(mm, SMALL_TENSOR_ELEMENTS)
            try:
                model.ParseFromString(skimmed if skimmed is not None else mm[:])
            except (DecodeError, RuntimeError, ValueError):
                if skimmed is None:
                    raise
                model.ParseFromString(mm[:])
    except OSError as e:
        raise HwUtilError(f"{path}: cannot read: {e.strerror}") from None
    except (DecodeError, RuntimeError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise HwUtilError(f"{path}: not a valid ONNX model (protobuf parse failed: {reason}); "
                          "the file may be truncated or of another format") from None
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise HwUtilError(f"{path}: not a valid ONNX model (no graph; the file may be truncated or of "
                          "another format)")
    if not model.graph.node:
        raise HwUtilError(f"{path}: the graph has no nodes, nothing to analyze")
    check_size(model.graph, path)
    strip_weights(model.graph)
    if model.functions:  # model-local functions: costed through their bodies, as a runtime runs them
        check_inlined_size(model, path)
        try:
            model = onnx.inliner.inline_local_functions(model)
        except Exception as e:  # onnx's inliner raises its own zoo of types
            reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
            raise HwUtilError(f"{path}: its model-local functions cannot be expanded ({reason})") from None
        check_size(model.graph, path)
    return model


def _subgraphs(graph: onnx.GraphProto):
    for node in graph.node:
        yield from _graphs_of(node)


def check_inlined_size(model: onnx.ModelProto, path: str) -> None:
    """Count the nodes inlining would produce before producing them: a function that calls the next one
    twice, 30 levels deep, is 2 KB on disk and 2^30 nodes inlined. Real exports inline to a few times their
    size on disk; past FUNCTION_GROWTH times that (and past 100,000 nodes) the file is a bomb. A function that
    calls itself is refused."""
    funcs = {(f.domain, f.name): f for f in model.functions}
    on_disk = len(model.graph.node) + sum(len(f.node) for f in model.functions)
    limit = min(MAX_NODES, max(INLINED_NODES_ALWAYS_ALLOWED, FUNCTION_GROWTH * on_disk))
    sizes: dict[tuple[str, str], int] = {}
    visiting: set[tuple[str, str]] = set()

    def expanded(nodes) -> int:
        total = 0
        for n in nodes:
            key = (n.domain, n.op_type)
            total += size_of(key) if key in funcs else 1
            total += sum(expanded(g.node) for g in _graphs_of(n))
            if total > limit:
                raise HwUtilError(f"{path}: its model-local functions expand to more than {limit:,} nodes "
                                  f"from {on_disk:,} in the file, beyond any real model")
        return total

    def size_of(key) -> int:
        if key not in sizes:
            if key in visiting:
                raise HwUtilError(f"{path}: model-local function {key[1]!r} calls itself; it cannot be "
                                  "expanded")
            visiting.add(key)
            sizes[key] = expanded(funcs[key].node)
            visiting.discard(key)
        return sizes[key]

    expanded(model.graph.node)


def _graphs_of(node: onnx.NodeProto):
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
        names = [v.name for v in (*g.input, *g.output, *g.value_info, *g.initializer)]
        scans = []
        for n in g.node:
            op = n.op_type
            names.append(op)
            names.append(n.domain)
            names.append(n.name)
            names.extend(n.input)
            names.extend(n.output)
            if op == "Scan":
                scans.append(n)
            if n.attribute:
                stack.extend((sub, depth + 1) for sub in _graphs_of(n))
        # protobuf hands back bytes for invalid UTF-8
        if not all(map(isinstance, names, repeat(str))):
            raise HwUtilError(f"{path}: names in the graph are not valid UTF-8; the file is corrupt")
        if names and max(map(len, names)) > MAX_NAME_CHARS:
            long = next(s for s in names if len(s) > MAX_NAME_CHARS)
            raise HwUtilError(f"{path}: a name of {len(long):,} characters ({long[:40]!r}...), beyond any "
                              f"real model (ONNX_HWUTIL_MAX_NAME_CHARS raises its limit, {MAX_NAME_CHARS:,})")
        for t in [*g.initializer, *(s.values for s in g.sparse_initializer)]:
            if any(d < 0 for d in t.dims):
                raise HwUtilError(f"{path}: initializer {t.name!r} has a negative dim {list(t.dims)}")
        for s in g.sparse_initializer:
            if any(d < 0 for d in s.dims):
                raise HwUtilError(f"{path}: sparse initializer {s.values.name!r} has a negative dim "
                                  f"{list(s.dims)}")
        for n in scans:
            _check_counts(n, path)


def _check_counts(node: onnx.NodeProto, path: str) -> None:
    """Attributes that size what a runtime allocates must be possible for the node as written: a Scan
    cannot scan more inputs than it has (2^30 of them sent onnxruntime's inference to 8 GB)."""
    if node.op_type == "Scan" and node.domain in ("", "ai.onnx"):
        n_scan = next((a.i for a in node.attribute if a.name == "num_scan_inputs"), None)
        if n_scan is not None and not 0 < n_scan <= len(node.input):
            raise HwUtilError(f"{path}: Scan node {node.name!r} declares num_scan_inputs={n_scan} but has "
                              f"{len(node.input)} inputs")


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
