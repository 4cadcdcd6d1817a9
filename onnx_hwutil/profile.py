"""Whole-model characteristics of one bound model at one precision: the object `profile` JSON is made of."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import onnx

from .bindings import Bindings, apply_bindings, bind_inputs, parse_shape_flag
from .dtypes import PARAM_TYPES, check_precision, dtype_name, tensor_nbytes
from .errors import HwUtilError
from .gcpause import paused_gc
from .graph import Graph
from .loader import load_model
from .memory import live_activation_bytes
from .ops import GraphCosts, cost_graph
from .rebatch import rebatch
from .shapes import declared_dims, file_shapes, infer

# The version of every JSON output's layout; onnx_hwutil/schemas/ holds the JSON Schema of each. Version 2:
# energy named per batch and per inference, `coverage` and `calibrated` in analyze entries.
SCHEMA = "onnx-hwutil/2"


@dataclass(frozen=True)
class BoundModel:
    """A model with every input bound and every tensor's shape inferred: the input to costing."""

    path: str
    graph: Graph
    inputs: dict[str, tuple[int, ...]]
    symbols: dict[str, int]
    opsets: dict[str, int]
    shape_notes: tuple[str, ...]
    batch_defaulted: bool = False  # an unbound batch dim was taken as 1
    rebatch: tuple[int, int] | None = None  # (the file's fixed batch, the batch it was rewritten to)
    # Per tensor the file declares a shape for (value_info, outputs): which of its dims it gives a value.
    # ONNX Runtime starts from these (fusion/ort_fold.py); ours are inferred afresh (shapes.infer).
    declared: Mapping[str, tuple[bool, ...]] = field(default_factory=dict)


class BindCache:
    """What `bind` may reuse across several bindings of the same files (an Analyzer's batches and
    what-ifs): each file as loaded, its own shapes, and the inferred graph of each distinct binding. Two
    bindings that give every input the same shape and every symbol the same value (no --batch, where the
    batch defaults to 1, and --batch 1) infer the same graph: shape inference runs once for both."""

    def __init__(self):
        self.models: dict[str, onnx.ModelProto] = {}  # never changed: a binding works on a copy
        self.file_shapes: dict[str, dict] = {}
        self.inferred: dict[tuple, tuple[Graph, dict[str, int], tuple[str, ...], tuple[str, ...]]] = {}


def bind(path: str | os.PathLike, bindings: Bindings | None = None,
         cache: BindCache | None = None) -> BoundModel:
    with paused_gc():
        return _bind(path, bindings or Bindings(), cache)


def _bind(path: str | os.PathLike, bindings: Bindings, cache: BindCache | None) -> BoundModel:
    path = os.fspath(path)
    if cache is None:
        model = load_model(path)
    else:
        if path not in cache.models:
            cache.models[path] = load_model(path)
        model = cache.models[path]
    b = bind_inputs(model, bindings.for_model(path, model))
    key = (path, tuple(sorted(b.shapes.items())), tuple(sorted(b.values.items())), b.rebatch,
           tuple(sorted(b.rebatched)))
    hit = cache.inferred.get(key) if cache is not None else None
    if hit is None:
        if cache is not None:  # the cached proto stays as loaded
            model = _copy(model)
        rebatch_notes: list[str] = []
        if b.rebatch:  # where the batch sits is read off the file's own shapes, before they change
            if cache is None:
                known = file_shapes(model)
            elif path in cache.file_shapes:
                known = cache.file_shapes[path]
            else:
                known = cache.file_shapes[path] = file_shapes(model)
            rebatch_notes = rebatch(model, b.rebatched, *b.rebatch, known=known)
        declared = {} if b.rebatch else declared_dims(model)  # a re-batched file's are stale
        apply_bindings(model, b.shapes, b.values)
        opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
        inferred, infer_notes, known = infer(model)
        # another binding of this file: a graph of the same nodes, whose structure the new one shares
        like = None if cache is None else next((g for k, (g, *_) in cache.inferred.items() if k[0] == path),
                                                None)
        hit = (Graph(inferred.graph, opsets, known=known, like=like), opsets, tuple(rebatch_notes),
               tuple(infer_notes), declared)
        if cache is not None:
            cache.inferred[key] = hit
    graph, opsets, rebatch_notes, infer_notes, declared = hit
    notes = [*b.notes, *rebatch_notes]
    if b.rebatch:  # a batch lost on the way (a constant we could not trace) must not pass silently
        kept = [o for o in graph.outputs
                if (((t := graph.lookup(o)) is not None and t.shape) or (None,))[:1] == (b.rebatch[0],)]
        if kept:
            notes.append(f"after re-batching, outputs {', '.join(kept)} still lead with {b.rebatch[0]}: "
                         "a node may fix the batch in a way re-batching cannot trace; their counts may be "
                         f"for batch {b.rebatch[0]}")
    return BoundModel(path, graph, b.shapes, b.values, opsets, (*notes, *infer_notes),
                      b.batch_defaulted, b.rebatch, declared)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


@dataclass(frozen=True)
class Totals:
    macs: int
    flops: int
    params: int
    weight_bytes: int
    activation_bytes: int
    dram_bytes: int
    arithmetic_intensity: float
    peak_memory_bytes: int


class Profile:
    """Per-node costs and whole-model totals. Every view (tables, JSON, CSV) is made from this object."""

    def __init__(self, bound: BoundModel, precision: str = "model",
                 stored: Mapping[str, float] | None = None, like: Profile | None = None):
        """`like`: a profile of the same graph at the same precision and storage, whose costs these are."""
        self.bound = bound
        self.precision = check_precision(precision)
        self.stored = dict(stored or {})  # tensor name -> bits in memory: a storage what-if (llm --weights)
        if like is not None and like.graph is bound.graph and like.precision == self.precision \
                and like.stored == self.stored:
            self.costs: GraphCosts = like.costs
            return
        with paused_gc():
            self.costs = cost_graph(bound.graph, self.precision, self.stored)

    @property
    def graph(self) -> Graph:
        return self.bound.graph

    @cached_property
    def params(self) -> tuple[int, int]:
        """(parameter count, weight bytes): constants of a parameter dtype that some node reads."""
        count = size = 0
        for t in _weights(self.graph):
            if t.dtype in PARAM_TYPES and t.static:
                count += t.numel
                size += tensor_nbytes(t, self.precision, self.stored)
        return count, size

    @cached_property
    def live_activation_bytes(self) -> tuple[list[int], int]:
        """(activation bytes alive at each step, bytes of all activation buffers): memory.py."""
        return live_activation_bytes(self.graph, self.costs, self.precision, self.stored)

    @cached_property
    def totals(self) -> Totals:
        total = self.costs.total
        live, act_bytes = self.live_activation_bytes
        peak_act = max(live)
        params, weight_bytes = self.params
        return Totals(
            macs=total.macs,
            flops=total.flops,
            params=params,
            weight_bytes=weight_bytes,
            activation_bytes=act_bytes,
            dram_bytes=total.dram_bytes,
            arithmetic_intensity=total.flops / total.dram_bytes if total.dram_bytes else 0.0,
            peak_memory_bytes=weight_bytes + peak_act,
        )

    @cached_property
    def model_precision(self) -> str:
        """The precision the file itself computes in: that of its matrix ops' inputs (int8 for a quantized
        model, fp16 for a half-precision export), fp32 otherwise."""
        from onnx import TensorProto as T

        from .dtypes import FLOATING

        seen = set()
        for nc in self.costs.nodes:
            if nc.cost.macs and nc.node.inputs:
                seen.add(self.graph.tensor(nc.node.inputs[0]).dtype)
        if seen & {T.INT8, T.UINT8}:
            return "int8"
        if T.FLOAT16 in seen:
            return "fp16"
        if T.BFLOAT16 in seen:
            return "bf16"
        return "fp8" if seen & FLOATING - {T.FLOAT, T.DOUBLE} else "fp32"

    @property
    def uncovered(self) -> list[dict]:
        return [{"domain": d, "op_type": op, "count": n}
                for (d, op), n in sorted(self.costs.uncovered.items())]

    @property
    def unresolved(self) -> list[dict]:
        return [{"node": n, "op_type": op, "tensor": t} for n, op, t in self.costs.unresolved]

    @property
    def coverage_notes(self) -> list[str]:
        """The gaps, then every shape and cost note: what each downstream report repeats."""
        return self.gaps + list(self.bound.shape_notes) + self.costs.notes

    @property
    def gaps(self) -> list[str]:
        """What the totals leave out (ops without a formula, nodes without a shape): never a silent zero."""
        out = []
        if self.uncovered:
            out.append("UNCOVERED ops (no cost formula; their FLOPs are not in the totals, their bytes are): "
                       + ", ".join(f"{u['domain']}::{u['op_type']} x{u['count']}" for u in self.uncovered))
        if self.unresolved:
            shown = ", ".join(f"{u['node']} ({u['op_type']})" for u in self.unresolved[:10])
            more = f" and {len(self.unresolved) - 10} more" if len(self.unresolved) > 10 else ""
            out.append(f"UNRESOLVED shapes: {len(self.unresolved)} nodes not costed: {shown}{more}")
        return out

    def by_op_type(self) -> list[dict]:
        rows: dict[tuple[str, str], dict] = {}
        for nc in self.costs.nodes:
            key = (nc.node.domain or "ai.onnx", nc.node.op_type)
            r = rows.setdefault(key, {"domain": key[0], "op_type": key[1], "count": 0, "macs": 0, "flops": 0,
                                      "dram_bytes": 0, "status": Counter()})
            r["count"] += 1
            r["macs"] += nc.cost.macs
            r["flops"] += nc.cost.flops
            r["dram_bytes"] += nc.cost.dram_bytes
            r["status"][nc.status] += 1
        out = []
        for r in rows.values():
            status = r.pop("status")
            mixed = ", ".join(f"{k} x{v}" for k, v in sorted(status.items()))
            r["status"] = "ok" if set(status) == {"ok"} else mixed
            out.append(r)
        return sorted(out, key=lambda r: (-r["flops"], -r["dram_bytes"], r["op_type"]))

    def to_dict(self) -> dict:
        t = self.totals
        return {
            "schema": SCHEMA,
            "model": {
                "path": self.bound.path,
                "opset": self.bound.opsets.get("", 0),
                "opsets": {k or "ai.onnx": v for k, v in sorted(self.bound.opsets.items())},
                "inputs": {k: list(v) for k, v in self.bound.inputs.items()},
                "symbols": dict(sorted(self.bound.symbols.items())),
            },
            "precision": self.precision,
            "totals": {
                "macs": t.macs, "flops": t.flops, "params": t.params, "weight_bytes": t.weight_bytes,
                "activation_bytes": t.activation_bytes, "dram_bytes": t.dram_bytes,
                "arithmetic_intensity": round(t.arithmetic_intensity, 6),
                "peak_memory_bytes": t.peak_memory_bytes, "nodes": len(self.costs.nodes),
            },
            "uncovered_ops": self.uncovered,
            "unresolved_nodes": self.unresolved,
            "notes": list(self.bound.shape_notes) + self.costs.notes,
            "nodes": [
                {"name": nc.node.name, "op_type": nc.node.op_type, "domain": nc.node.domain or "ai.onnx",
                 "macs": nc.cost.macs, "flops": nc.cost.flops, "bytes_read": nc.cost.bytes_read,
                 "bytes_written": nc.cost.bytes_written, "weight_bytes": nc.cost.weight_bytes,
                 "kind": nc.cost.kind.label, "status": nc.status,
                 "outputs": [_shape_str(self.graph, o) for o in nc.node.outputs if o]}
                for nc in self.costs.nodes
            ],
        }


def _shape_str(graph: Graph, name: str) -> str:
    t = graph.tensor(name)
    dims = "?" if t.shape is None else "x".join("?" if d is None else str(d) for d in t.shape) or "scalar"
    return f"{dims} {dtype_name(t.dtype)}"


def _weights(graph: Graph):
    """Parameter tensors (constant roots, not views of them) read by some node, here and in nested graphs,
    each counted once."""
    seen: set[str] = set()
    roots: set[str] = set()
    stack = [graph]
    while stack:
        g = stack.pop()
        roots |= g.param_roots
        for name in g.consumers:
            t = g.lookup(name)  # a body may read an enclosing graph's weights
            if t is not None and t.const and name in roots and name not in seen:
                seen.add(name)
                yield t
        for n in g.nodes:
            for sub in n.subgraphs().values():
                stack.append(Graph(sub, g.opsets, g))


def profile(path: str | os.PathLike, shapes: dict | None = None, dims: dict | None = None,
            batch: int | None = None, precision: str = "model") -> Profile:
    """Load, bind, infer and cost a model: the Python face of `onnx-hwutil profile`.

    `shapes` maps input names to shapes (tuples, or strings like "1x3x224x224"); `dims` binds symbolic
    dims by name; `batch` binds the leading symbolic dim of the inputs.
    """
    check_precision(precision)
    if batch is not None and batch < 1:
        raise HwUtilError(f"--batch {batch}: must be at least 1")
    parsed = {}
    for k, v in (shapes or {}).items():
        if isinstance(v, str):
            v = parse_shape_flag(f"{k}={v}")[1]
        parsed[k] = tuple(int(d) for d in v)
    bound = bind(path, Bindings(parsed, dict(dims or {}), batch))
    return Profile(bound, precision)


__all__ = ["SCHEMA", "BoundModel", "Profile", "Totals", "bind", "profile"]
