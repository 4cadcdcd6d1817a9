"""Per-op cost formulas, one registry, grouped by op family; `cost_graph` applies them to a graph."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..dtypes import PARAM_TYPES
from ..graph import Graph, Node

# imported for their registrations
from . import attention, control, elementwise, matrix, movement, normalization, pooling  # noqa: F401
from .registry import (
    Cost,
    Gemm,
    MalformedNode,
    MissingShape,
    OpContext,
    OpKind,
    Traffic,
    cost_of,
    covered_ops,
    evaluate,
    formula_for,
)

__all__ = ["Cost", "Gemm", "GraphCosts", "NodeCost", "OpKind", "Traffic", "cost_graph", "covered_ops",
           "formula_for"]


@dataclass(frozen=True, slots=True)
class NodeCost:
    node: Node
    cost: Cost
    # "ok"; "uncovered": no formula, FLOPs unknown; "unresolved": a shape is unknown; "invalid": the node
    # breaks its op's spec (a required attribute missing, say)
    status: str
    notes: tuple[str, ...] = ()
    missing: str | None = None  # the tensor whose shape was unknown
    traffic: Traffic = field(default_factory=Traffic)
    nested: bool = False  # control flow: its bytes are its bodies' traffic, not its own I/O
    gemms: tuple[Gemm, ...] = ()  # the matrix work as discrete units see it (registry.Work.gemms)


@dataclass
class GraphCosts:
    nodes: list[NodeCost]
    total: Cost
    uncovered: Counter = field(default_factory=Counter)  # (domain, op_type) -> node count, nested included
    unresolved: list[tuple[str, str, str]] = field(default_factory=list)  # (node, op_type, tensor)
    notes: list[str] = field(default_factory=list)
    nodes_total: int = 0  # nodes, nested bodies included
    uncosted_nodes: int = 0  # of those, without a formula, a shape or a valid spec: not in the totals
    # MACs those nodes do at the least: every weight element multiplied once (a matrix op's M >= 1).
    uncosted_macs_lower_bound: int = 0

    @property
    def coverage(self) -> dict:
        """What the totals leave out, as numbers every table row, JSON entry and gate can carry."""
        macs = self.total.macs
        lb = self.uncosted_macs_lower_bound
        return {"nodes": self.nodes_total, "uncosted_nodes": self.uncosted_nodes,
                "uncosted_node_share": self.uncosted_nodes / self.nodes_total if self.nodes_total else 0.0,
                "uncosted_macs_at_least": lb,
                "uncosted_mac_share_at_least": lb / (macs + lb) if macs + lb else 0.0}


def cost_graph(graph: Graph, precision: str, stored: Mapping[str, float] | None = None) -> GraphCosts:
    """Every node's cost at `precision`; `stored` re-prices named tensors' bytes (dtypes.tensor_nbytes)."""

    def coster(proto, outer: Graph) -> GraphCosts:
        return cost_graph(Graph(proto, graph.opsets, outer), precision, stored)

    nodes: list[NodeCost] = []
    # the totals, summed as plain numbers (one Cost at the end, not one per node)
    macs = flops = bytes_read = bytes_written = weight_bytes = 0
    kind = OpKind.SHAPE
    uncovered: Counter = Counter()
    unresolved: list[tuple[str, str, str]] = []
    notes: list[str] = []
    byte_cache: dict[str, int] = {}
    memo: dict[tuple, tuple] = {}  # _signature -> (cost, traffic, work): repeated layers cost once
    nested_total = nested_uncosted = nested_lb = 0
    for node in graph.nodes:
        ctx = OpContext(node, graph, precision, coster, byte_cache, stored)
        if formula_for(node.domain, node.op_type) is None:
            uncovered[(node.domain or "ai.onnx", node.op_type)] += 1
            try:  # the bytes of an op we cannot price are still known from its shapes
                traffic = ctx.traffic()
            except MissingShape:
                traffic = Traffic()
            c = cost_of(0, 0, OpKind.OPAQUE, traffic)
            nodes.append(NodeCost(node, c, "uncovered", ("no cost formula: FLOPs not counted",),
                                  traffic=traffic))
        else:
            key = _signature(node, graph, precision, stored)
            hit = memo.get(key) if key is not None else None
            try:
                if hit is None:
                    c, traffic, work = evaluate(ctx)
                    if key is not None:
                        memo[key] = c, traffic, work
                else:
                    c, traffic, work = hit[0], _renamed(hit[1], node), hit[2]
            except MissingShape as e:
                unresolved.append((node.name, node.op_type, e.tensor))
                nodes.append(NodeCost(node, Cost(kind=OpKind.OPAQUE), "unresolved",
                                      (f"shape of {e.tensor!r} unknown: not costed",), e.tensor))
                continue
            except MalformedNode as e:
                # A node its own op's spec does not allow: reported with the reason and left out of the
                # totals, like an unshaped one. Any other exception is a bug in a formula and must surface.
                reason = f"malformed {node.op_type} node ({e})"
                unresolved.append((node.name, node.op_type, reason))
                nodes.append(NodeCost(node, Cost(kind=OpKind.OPAQUE), "invalid", (reason + ": not costed",)))
                continue
            for _label, child, times in work.children:
                uncovered.update(child.uncovered)
                unresolved.extend(child.unresolved)
                nested_total += child.nodes_total
                nested_uncosted += child.uncosted_nodes
                nested_lb += child.uncosted_macs_lower_bound * max(times, 1)
            nodes.append(NodeCost(node, c, "ok", work.notes, traffic=traffic,
                                  nested=work.nested is not None, gemms=work.gemms))
            if work.notes:
                notes.extend(f"{node.name} ({node.op_type}): {n}" for n in work.notes)
        # totals as plain numbers (a 100k-node graph: no Cost object per node to add up)
        macs += c.macs
        flops += c.flops
        bytes_read += c.bytes_read
        bytes_written += c.bytes_written
        weight_bytes += c.weight_bytes
        kind = max(kind, c.kind)
    uncosted = [nc for nc in nodes if nc.status != "ok"]
    lb = sum(_weight_macs(nc.node, graph) for nc in uncosted)
    total = Cost(macs, flops, bytes_read, bytes_written, weight_bytes, kind)
    return GraphCosts(nodes, total, uncovered, unresolved, notes, len(nodes) + nested_total,
                      len(uncosted) + nested_uncosted, lb + nested_lb)


def _signature(node: Node, graph: Graph, precision: str, stored: Mapping[str, float] | None) -> tuple | None:
    """All a formula can see of a node (OpContext): its op, attributes and, per input and output, shape,
    dtype, constness and small constant value, plus the storage what-if's bits. Two nodes with the same
    signature cost the same; a transformer's repeated layers are costed once per graph. None for control
    flow, whose cost is its bodies'."""
    if node.subgraphs():
        return None
    tensor, value = graph.tensor, graph.constant_value
    ins = []
    for t in node.inputs:
        if not t:
            ins.append(None)
            continue
        x = tensor(t)
        v = value(t) if x.const else None
        ins.append((x.shape, x.dtype, x.const, None if v is None else (v.dtype.str, v.shape, v.tobytes()),
                    stored.get(t) if stored else None))
    outs = tuple((x.shape, x.dtype, stored.get(t) if stored else None) if t and (x := tensor(t)) else None
                 for t in node.outputs)
    attrs = tuple(a.SerializeToString() for a in node.proto.attribute)
    return node.domain, node.op_type, precision, attrs, tuple(ins), outs


def _renamed(traffic: Traffic, node: Node) -> Traffic:
    """A memoized node's traffic under this node's tensor names (same positions: same signature)."""
    if not traffic.reads and not traffic.writes:  # shape math moves no data
        return traffic
    ins = [t for t in node.inputs if t]
    outs = [t for t in node.outputs if t]
    return Traffic(tuple((n, b, w) for n, (_, b, w) in zip(ins, traffic.reads, strict=True)),
                   tuple((n, b) for n, (_, b) in zip(outs, traffic.writes, strict=True)))


def _weight_macs(node: Node, graph: Graph) -> int:
    """A lower bound on an uncosted matrix op's MACs: its largest constant operand of rank >= 2 (a weight
    matrix or kernel), each element used at least once. 0 for other ops (a table read by a Gather does no
    MACs), and for ops we have no formula for, whose arithmetic we cannot know."""
    fn = formula_for(node.domain, node.op_type)
    if fn is None or fn.__module__ not in (matrix.__name__, attention.__name__):
        return 0
    best = 0
    for name in node.inputs:
        t = graph.lookup(name) if name else None
        if t is not None and t.const and t.static and t.shape is not None and len(t.shape) >= 2 \
                and t.dtype in PARAM_TYPES:
            best = max(best, t.numel)
    return best
