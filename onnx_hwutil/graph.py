"""The model as a networkx DAG: node = op, edge = the tensors one op hands to another.

Built from an in-memory model whose shapes are already inferred (see `shapes`). Validation that needs the
whole structure lives here: dangling inputs, duplicate producers, cycles.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from functools import cached_property

import networkx as nx
import numpy as np
import onnx
from onnx import helper, numpy_helper

from .bindings import graph_inputs
from .errors import HwUtilError
from .limits import MAX_ELEMENTS
from .shape_readers import tensor_shapes

Dims = tuple[int | None, ...]
# Ops whose first output is a view of their first input: no data moves, no new buffer.
VIEW_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Optional",
            "OptionalGetElement"}
# Constants whose values formulas read: trip counts, conditions, axes, Reshape targets, lengths. A shape
# vector has one entry per dim, so 64 holds any of them without keeping tables of data.
SMALL_CONSTANT_ELEMENTS = 64
# The default-domain ops that carry subgraphs; other domains are checked attribute by attribute.
_CONTROL_FLOW = {"If", "Loop", "Scan", "SequenceMap"}


@dataclass(frozen=True, slots=True)
class Tensor:
    name: str
    shape: Dims | None  # None: rank unknown; a None dim: that dim unknown
    dtype: int
    const: bool  # an initializer, a Constant output or a ConstantOfShape of constants: a weight, not data
    static: bool = field(init=False)  # every dim known
    numel: int = field(init=False)  # 0 unless static

    def __post_init__(self):
        static = self.shape is not None and None not in self.shape
        n = 1
        if static:
            for d in self.shape:
                n *= d
        object.__setattr__(self, "static", static)
        object.__setattr__(self, "numel", n if static else 0)


@dataclass(frozen=True, slots=True, eq=False)
class Node:
    name: str
    op_type: str
    domain: str  # "" for the default ONNX domain
    inputs: tuple[str, ...]  # "" marks an omitted optional input
    outputs: tuple[str, ...]
    proto: onnx.NodeProto

    def attr(self, name: str, default=None):
        for a in self.proto.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default

    def subgraphs(self) -> dict[str, onnx.GraphProto]:
        if self.op_type not in _CONTROL_FLOW and self.domain == "":
            return {}
        return {a.name: a.g for a in self.proto.attribute if a.type == onnx.AttributeProto.GRAPH}

    @property
    def key(self) -> tuple[str, str]:
        return (self.domain, self.op_type)


class Graph:
    """One (sub)graph with every tensor's shape and dtype, in execution order."""

    def __init__(self, proto: onnx.GraphProto, opsets: dict[str, int], outer: Graph | None = None,
                 known: dict | None = None, like: Graph | None = None):
        """`like`: a top-level graph of the same nodes, inputs, outputs and initializers (the same file
        bound otherwise): its structure (nodes, DAG, execution order, post-dominators) is shared and only
        the tensors are this graph's own."""
        self.proto = proto
        self.opsets = opsets
        self.outer = outer
        self.depth = 0 if outer is None else outer.depth + 1
        known = tensor_shapes(proto) if known is None else known
        if like is not None and outer is None and like.outer is None and like.opsets == opsets \
                and _signature(proto) == like.signature:
            for k in _SHARED:
                if k in vars(like):
                    setattr(self, k, getattr(like, k))
            self.tensors = _tensors(known, self.constants, self.nodes)
            return
        init_names = {i.name for i in proto.initializer} | {s.values.name for s in proto.sparse_initializer}
        self.inputs = [v.name for v in (graph_inputs(proto) if outer is None else proto.input)]
        self.outputs = [v.name for v in proto.output]

        nodes: list[Node] = []
        seen: dict[str, int] = {}
        for i, p in enumerate(proto.node):
            name = p.name or f"{p.op_type}_{i}"
            if name in seen:
                seen[name] += 1
                name = f"{name}#{seen[name]}"
            else:
                seen[name] = 0
            domain = "" if p.domain == "ai.onnx" else p.domain
            nodes.append(Node(name, p.op_type, domain, tuple(p.input), tuple(p.output), p))

        producer: dict[str, Node] = {}
        for n in nodes:
            for o in n.outputs:
                if not o:
                    continue
                if o in producer or o in init_names:
                    raise HwUtilError(f"tensor {o!r} is produced twice (by node {n.name!r} and "
                                      f"{producer[o].name if o in producer else 'an initializer'!r})")
                producer[o] = n
        self.producer = producer

        const = set(init_names)
        for n in nodes:
            if n.domain == "" and n.op_type == "Constant":
                const.update(o for o in n.outputs if o)
        # ConstantOfShape fed by constants is a weight computed at load time, as exporters emit for zeros.
        for n in nodes:
            if n.domain == "" and n.op_type == "ConstantOfShape" and all(i in const for i in n.inputs if i):
                const.update(o for o in n.outputs if o)
        # The roots hold the parameters; a view of a constant (Reshape(W), Identity(W) in shared-weight
        # exports) is the same weight under another name: constant, but not a parameter of its own.
        self.param_roots = set(const)
        for n in nodes:
            if n.domain == "" and n.op_type in VIEW_OPS and n.inputs and n.inputs[0] in const \
                    and all(i in const for i in n.inputs if i):
                const.update(o for o in n.outputs[:1] if o)
        self.constants = const

        self.tensors = _tensors(known, const, nodes)

        graph_level = set(self.inputs) | init_names
        edges: dict[tuple[str, str], list[str]] = {}  # built first, added in bulk: 100k-node graphs
        for n in nodes:
            for t in _all_inputs(n):
                src = producer.get(t)
                if src is not None:
                    edges.setdefault((src.name, n.name), []).append(t)
                elif t not in graph_level and (outer is None or outer.lookup(t) is None):
                    raise HwUtilError(f"node {n.name!r} ({n.op_type}) reads tensor {t!r}, which no node, "
                                      "initializer or graph input produces")
        for o in self.outputs:
            if o not in producer and o not in graph_level and (outer is None or outer.lookup(o) is None):
                raise HwUtilError(f"graph output {o!r} is produced by nothing")
        dag = nx.DiGraph()
        dag.add_nodes_from(n.name for n in nodes)
        dag.add_edges_from((u, v, {"tensors": ts}) for (u, v), ts in edges.items())
        self.dag = dag
        self.nodes = _execution_order(nodes, dag)
        self.by_name = {n.name: n for n in self.nodes}

    @cached_property
    def signature(self) -> tuple:
        """What `like` must match: _signature of this graph's proto."""
        return _signature(self.proto)

    def lookup(self, name: str) -> Tensor | None:
        """A tensor visible in this scope: this graph's, or an enclosing graph's."""
        t = self.tensors.get(name)
        if t is not None or self.outer is None:
            return t  # the common case, asked millions of times on big graphs: no loop
        g: Graph | None = self.outer
        while g is not None:
            t = g.tensors.get(name)
            if t is not None:
                return t
            g = g.outer
        return None

    def tensor(self, name: str) -> Tensor:
        t = self.lookup(name)
        return t if t is not None else Tensor(name, None, 0, False)

    @cached_property
    def index(self) -> dict[str, int]:
        """Node name -> position in execution order."""
        return {n.name: i for i, n in enumerate(self.nodes)}

    @cached_property
    def consumers(self) -> dict[str, list[Node]]:
        """Tensor -> nodes that read it, a subgraph's reads of enclosing-scope tensors included."""
        out: dict[str, list[Node]] = {}
        for n in self.nodes:
            for t in self.reads(n):
                out.setdefault(t, []).append(n)
        return out

    @cached_property
    def post_dominators(self) -> dict[str, str]:
        """Immediate post-dominator of every node, a virtual sink after the graph outputs left out: what
        fusion's region rules read, the same for every preset and precision the graph is fused at."""
        dag, outputs = self.dag, set(self.outputs)
        rev = nx.DiGraph()  # names only: dag.reverse(copy=True) would deep-copy every edge's tensor list
        rev.add_nodes_from(dag)
        rev.add_edges_from((v, u) for u, v in dag.edges)
        sink = "\0sink"
        rev.add_node(sink)
        for n in self.nodes:
            if dag.out_degree(n.name) == 0 or any(o in outputs for o in n.outputs):
                rev.add_edge(sink, n.name)
        dom = nx.immediate_dominators(rev, sink)
        return {k: v for k, v in dom.items() if k != sink and v != sink}

    def reads(self, n: Node) -> list[str]:
        """Every tensor a node reads: its inputs, and what its subgraphs read from this scope."""
        return _all_inputs(n) if n.subgraphs() else [t for t in n.inputs if t]

    @cached_property
    def small_constants(self) -> dict[str, np.ndarray]:
        """Values of constants small enough to keep (trip counts, conditions, axes)."""
        out: dict[str, np.ndarray] = {}
        for init in self.proto.initializer:
            _try_value(out, init.name, init)
        for n in self.nodes:
            if n.domain == "" and n.op_type == "Constant" and n.outputs:
                for a in n.proto.attribute:
                    if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                        _try_value(out, n.outputs[0], a.t)
                    elif a.name in ("value_int", "value_float"):
                        out[n.outputs[0]] = np.array(helper.get_attribute_value(a))
        return out

    def constant_value(self, name: str) -> np.ndarray | None:
        g: Graph | None = self
        while g is not None:
            if name in g.small_constants:
                return g.small_constants[name]
            g = g.outer
        return None


# What a graph shares with a `like` of the same signature: everything its proto's nodes decide, cached
# properties included. Not `small_constants`: those come from the proto's initializers, which inference
# may have written.
_SHARED = ("inputs", "outputs", "producer", "param_roots", "constants", "dag", "nodes", "by_name",
           "signature", "index", "consumers", "post_dominators")


def _signature(proto: onnx.GraphProto) -> tuple:
    """The structure a Graph builds from a proto: its nodes (name, op, domain, inputs, outputs), inputs,
    outputs and initializer names. Two protos of one file bound at two batches have the same."""
    return (tuple((p.name, p.op_type, p.domain, tuple(p.input), tuple(p.output)) for p in proto.node),
            tuple(v.name for v in proto.input), tuple(v.name for v in proto.output),
            tuple(i.name for i in proto.initializer), tuple(s.values.name for s in proto.sparse_initializer))


def _tensors(known: dict, const: set[str], nodes: list[Node]) -> dict[str, Tensor]:
    """Every tensor of a graph: those `known` gives a shape, Constant outputs from their own values, and
    the other outputs of `nodes` with no shape known."""
    tensors: dict[str, Tensor] = {}
    for name, (shape, dtype) in known.items():
        t = tensors[name] = Tensor(name, shape, dtype, name in const)
        if t.numel > MAX_ELEMENTS:
            dims = "x".join(map(str, shape))
            raise HwUtilError(f"tensor {name!r} has {t.numel:.3g} elements ({dims}), beyond any real "
                              "model; check its dims or the --shape/--dim bindings")
    for n in nodes:
        if n.domain == "" and n.op_type == "Constant" and n.outputs and n.outputs[0]:
            shape, dtype = _constant_meta(n)
            prev = tensors.get(n.outputs[0])
            if shape is not None or prev is None:
                tensors[n.outputs[0]] = Tensor(n.outputs[0], shape, dtype, True)
        for o in n.outputs:
            if o and o not in tensors:
                tensors[o] = Tensor(o, None, 0, o in const)
    return tensors


def _all_inputs(n: Node) -> list[str]:
    """Inputs, plus outer-scope tensors that the node's subgraphs read (they are real dependencies)."""
    ins = [t for t in n.inputs if t]
    for g in n.subgraphs().values():
        ins.extend(sorted(outer_references(g)))
    return list(dict.fromkeys(ins))


def outer_references(g: onnx.GraphProto) -> set[str]:
    local = {v.name for v in g.input} | {i.name for i in g.initializer}
    for node in g.node:
        local.update(node.output)
    refs: set[str] = set()
    for node in g.node:
        refs.update(t for t in node.input if t and t not in local)
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                refs.update(t for t in outer_references(a.g) if t not in local)
    refs.update(o.name for o in g.output if o.name not in local)
    return refs


def _execution_order(nodes: list[Node], dag: nx.DiGraph) -> list[Node]:
    """The file's order when it is topological (as it must be, and as runtimes run it), else a sort."""
    done: set[str] = set()
    ok = True
    for n in nodes:
        for pred in dag.predecessors(n.name):
            if pred not in done:
                ok = False
                break
        if not ok:
            break
        done.add(n.name)
    if ok:
        return nodes
    index = {n.name: i for i, n in enumerate(nodes)}
    try:
        order = list(nx.lexicographical_topological_sort(dag, key=index.__getitem__))
    except nx.NetworkXUnfeasible:
        cycle = [u for u, _ in nx.find_cycle(dag)]
        shown = " -> ".join(cycle[:6]) + (" -> ..." if len(cycle) > 6 else "") + f" -> {cycle[0]}"
        raise HwUtilError(f"the graph has a cycle: {shown}") from None
    by_name = {n.name: n for n in nodes}
    return [by_name[k] for k in order]


def _constant_meta(n: Node) -> tuple[Dims | None, int]:
    for a in n.proto.attribute:
        if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
            return tuple(a.t.dims), a.t.data_type
        if a.name == "sparse_value":
            return tuple(a.sparse_tensor.dims), a.sparse_tensor.values.data_type
        if a.name in ("value_int", "value_float"):
            return (), onnx.TensorProto.INT64 if a.name == "value_int" else onnx.TensorProto.FLOAT
        if a.name in ("value_ints", "value_floats"):
            vals = helper.get_attribute_value(a)
            dtype = onnx.TensorProto.INT64 if a.name == "value_ints" else onnx.TensorProto.FLOAT
            return (len(vals),), dtype
        if a.name == "value_string":
            return (), onnx.TensorProto.STRING
        if a.name == "value_strings":
            return (len(a.strings),), onnx.TensorProto.STRING
    return None, 0


def _try_value(out: dict[str, np.ndarray], name: str, t: onnx.TensorProto) -> None:
    n = 1
    for d in t.dims:
        n *= d
    if n > SMALL_CONSTANT_ELEMENTS:
        return
    # Stripped payloads (see loader) and odd dtypes simply have no known value.
    with contextlib.suppress(Exception):
        out[name] = numpy_helper.to_array(t)
