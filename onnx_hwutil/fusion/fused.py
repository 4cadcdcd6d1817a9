"""Costs after fusion: a subgraph's DRAM traffic is what crosses its boundary, plus its weights.

Traffic is settled per buffer: outputs of views (Reshape, Squeeze...) and of folded nodes are the same
buffer as their input, so a view never moves data. Inside a subgraph, a buffer produced and consumed there
never reaches DRAM; it is part of the subgraph's on-chip working set instead (the hardware stage spills it
if the chip cannot hold it). Intermediates that only elementwise, broadcast or row-wise reduction ops read are
produced and consumed tile by tile (an epilogue never materializes its input), so only those a matrix or
opaque op reads whole count; a tiled subgraph (fused attention) streams even those.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import networkx as nx

from ..graph import VIEW_OPS
from ..ops import Gemm, NodeCost, OpKind
from ..profile import SCHEMA, Profile
from .context import METADATA_READERS
from .partition import Partition


@dataclass(frozen=True)
class Subgraph:
    id: int
    nodes: tuple[str, ...]
    label: str
    kind: OpKind
    macs: int
    flops: int
    bytes_read: int
    bytes_written: int
    weight_bytes: int
    working_set_bytes: int
    folded: tuple[str, ...] = ()
    tiled: bool = False
    # Boundary traffic per buffer, for cache modeling.
    reads: tuple[tuple[str, int, bool], ...] = ()
    writes: tuple[tuple[str, int], ...] = ()
    # What the matrix units do: each member's GEMMs (of folded members none), the MACs of the members that
    # have them, how many of those have no geometry we know, and whether the operands are 8-bit integers.
    gemms: tuple[Gemm, ...] = ()
    matrix_macs: int = 0
    approx_nodes: int = 0
    int8: bool = False

    @property
    def dram_bytes(self) -> int:
        return self.bytes_read + self.bytes_written + self.weight_bytes

    @property
    def arithmetic_intensity(self) -> float:
        return self.flops / self.dram_bytes if self.dram_bytes else 0.0

    @property
    def is_kernel(self) -> bool:
        """Does a runtime launch something for it? Pure metadata (views, shape math) launches nothing."""
        return self.kind != OpKind.SHAPE


class FusedGraph:
    """The fused view of a profiled model: subgraphs in execution order, each with its costs."""

    def __init__(self, profile: Profile, partition: Partition, preset: str, passes: list[str],
                 pass_merges: dict[str, int]):
        self.profile = profile
        self.partition = partition
        self.preset = preset
        self.passes = passes
        self.pass_merges = pass_merges
        costs = {nc.node.name: nc for nc in profile.costs.nodes}
        self._root = _buffer_roots(profile, partition.folded)
        idx = profile.graph.index
        order = sorted(partition.members, key=lambda g: idx[partition.members[g][0]])
        self.subgraphs = [self._settle(i, partition.members[g], costs, g) for i, g in enumerate(order)]
        self._gid_to_sub = {g: i for i, g in enumerate(order)}

    def _settle(self, sid: int, members: list[str], costs: dict[str, NodeCost], gid: int) -> Subgraph:
        # One pass over the members (a 100k-node graph settles 50k subgraphs: no per-subgraph comprehensions).
        part = self.partition
        graph = self.profile.graph
        folded, static = part.folded, part.static
        inside = set(members)
        root, producer = self._root, self._producer
        out_roots, readers = self._output_roots, self._data_readers
        macs = flops = internal = matrix_macs = approx = 0
        kind = OpKind.SHAPE
        gemms: list[Gemm] = []
        real: list[str] = []
        nested: list[str] = []
        read: dict[str, int] = {}
        weights: dict[str, int] = {}
        writes: list[tuple[str, int]] = []
        for m in members:
            if m in folded:
                continue
            nc = costs[m]
            cost = nc.cost
            macs += cost.macs
            flops += cost.flops
            if nc.gemms:
                gemms.extend(nc.gemms)
                matrix_macs += cost.macs
                approx += any(g.approx for g in nc.gemms)
            if cost.kind == OpKind.SHAPE or m in static:
                continue
            real.append(m)
            if cost.kind > kind:
                kind = cost.kind
            if nc.nested:
                nested.append(m)
                continue
            for t, b, is_weight in nc.traffic.reads:
                r = root.get(t, t)
                writer = producer.get(r)
                if writer in static:
                    is_weight = True  # folded at load (a dequantized or transposed weight): a constant
                elif writer in inside:
                    continue  # produced in this subgraph: on chip
                bucket = weights if is_weight else read
                bucket[r] = max(bucket.get(r, 0), b)
            for t, b in nc.traffic.writes:
                r = root.get(t, t)
                if r in out_roots or not readers.get(r, _NONE) <= inside:
                    writes.append((r, b))  # it escapes the subgraph: written to memory
                elif any(costs[c].cost.kind >= OpKind.MATRIX for c in readers.get(r, ())):
                    internal += b  # a matrix or opaque op reads it whole: it must be materialized
        label = part.labels.get(gid) or _default_label(graph, real or members)
        if not real:
            kind = OpKind.SHAPE
        tiled = gid in part.tiled
        reads = [(r, b, False) for r, b in read.items()] + [(r, b, True) for r, b in weights.items()]
        rd, wb, wr = sum(read.values()), sum(weights.values()), sum(b for _, b in writes)
        if nested:
            # a control-flow node's bodies read what their costing counted, branch weights included: one
            # pseudo-buffer each, so the mapping moves the bytes the totals hold
            c = [costs[m].cost for m in nested]
            rd += sum(x.bytes_read for x in c)
            wb += sum(x.weight_bytes for x in c)
            wr += sum(x.bytes_written for x in c)
            reads += [(f"{m} (body reads)", x.bytes_read, False) for m, x in zip(nested, c, strict=True)
                      if x.bytes_read]
            reads += [(f"{m} (body weights)", x.weight_bytes, True) for m, x in zip(nested, c, strict=True)
                      if x.weight_bytes]
        int8 = label.startswith(("QLinear", "QGemm")) or any(
            graph.by_name[m].op_type in INT8_MATRIX_OPS for m in members)
        return Subgraph(sid, tuple(members), label, kind, macs, flops, rd, wr, wb,
                        working_set_bytes=rd + wr + wb + (0 if tiled else internal),
                        folded=tuple(m for m in members if m in folded) if folded else (), tiled=tiled,
                        reads=tuple(reads), writes=tuple(writes),
                        gemms=tuple(replace(g, int8=True) for g in gemms) if int8 else tuple(gemms),
                        matrix_macs=matrix_macs, approx_nodes=approx, int8=int8)

    @cached_property
    def _producer(self) -> dict[str, str]:
        """Buffer root -> the node that writes it."""
        out = {}
        for n in self.profile.graph.nodes:
            for o in n.outputs:
                if o and self._root.get(o, o) == o:
                    out[o] = n.name
        return out

    @cached_property
    def _data_readers(self) -> dict[str, set[str]]:
        """Buffer root -> real nodes that read its data (through any chain of views)."""
        out: dict[str, set[str]] = {}
        costs = {nc.node.name: nc for nc in self.profile.costs.nodes}
        for n in self.profile.graph.nodes:
            if costs[n.name].cost.kind == OpKind.SHAPE or n.name in self.partition.folded:
                continue
            if n.op_type in METADATA_READERS:
                continue
            for t in self.profile.graph.reads(n):
                out.setdefault(self._root.get(t, t), set()).add(n.name)
        return out

    @cached_property
    def _output_roots(self) -> set[str]:
        return {self._root.get(o, o) for o in self.profile.graph.outputs}

    # -- views -----------------------------------------------------------------------------------------
    def kernel(self, sid: int) -> Subgraph:
        return next(s for s in self.subgraphs if s.id == sid)

    @property
    def coverage_notes(self) -> list[str]:
        return self.profile.coverage_notes

    @property
    def coverage(self) -> dict:
        return self.profile.costs.coverage

    @property
    def kernels(self) -> list[Subgraph]:
        return [s for s in self.subgraphs if s.is_kernel]

    @cached_property
    def totals(self) -> dict:
        flops = sum(s.flops for s in self.subgraphs)
        dram = sum(s.dram_bytes for s in self.subgraphs)
        return {"kernels": len(self.kernels), "macs": sum(s.macs for s in self.subgraphs), "flops": flops,
                "dram_bytes": dram, "arithmetic_intensity": round(flops / dram, 6) if dram else 0.0,
                "folded_nodes": [m for s in self.subgraphs for m in s.folded],
                "folded_flops": sum(nc.cost.flops for nc in self.profile.costs.nodes
                                    if nc.node.name in self.partition.folded)}

    def dag(self) -> nx.DiGraph:
        """Subgraphs as nodes, an edge where one reads what the other writes."""
        g = nx.DiGraph()
        part = self.partition
        g.add_nodes_from(range(len(self.subgraphs)))
        for u, v in self.profile.graph.dag.edges:
            a, b = self._gid_to_sub[part.group_of[u]], self._gid_to_sub[part.group_of[v]]
            if a != b:
                g.add_edge(a, b)
        return g

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "model": self.profile.bound.path,
            "preset": self.preset,
            "passes": self.passes,
            "merges": self.pass_merges,
            "precision": self.profile.precision,
            "subgraphs": [
                {"id": s.id, "nodes": list(s.nodes), "label": s.label, "kind": s.kind.label, "macs": s.macs,
                 "flops": s.flops, "dram_bytes": s.dram_bytes, "bytes_read": s.bytes_read,
                 "bytes_written": s.bytes_written, "weight_bytes": s.weight_bytes,
                 "arithmetic_intensity": round(s.arithmetic_intensity, 6),
                 "working_set_bytes": s.working_set_bytes, "folded": list(s.folded), "tiled": s.tiled}
                for s in self.subgraphs
            ],
            "totals": self.totals,
        }


_NONE: frozenset[str] = frozenset()

# Matrix ops whose operands are 8-bit integers as they run: the quantized ops themselves, and a QDQ node
# unit that fusion turned into one (labelled QLinear*, as ORT's QDQ selectors make it).
INT8_MATRIX_OPS = frozenset({"QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "QGemm",
                             "DynamicQuantizeMatMul", "MatMulIntegerToFloat"})


def _default_label(graph, members: list[str]) -> str:
    ops: list[str] = []
    for m in members:
        op = graph.by_name[m].op_type
        if not ops or ops[-1] != op:
            ops.append(op)
    label = "+".join(ops)
    return label if len(label) <= 60 else label[:57] + "..."


def _buffer_roots(profile: Profile, folded: set[str]) -> dict[str, str]:
    """Tensor -> the buffer it lives in: views and folded nodes hand their input's buffer on."""
    root: dict[str, str] = {}
    for n in profile.graph.nodes:
        view = (n.domain == "" and n.op_type in VIEW_OPS) or n.name in folded
        if view and n.inputs and n.inputs[0] and n.outputs and n.outputs[0]:
            root[n.outputs[0]] = root.get(n.inputs[0], n.inputs[0])
    return root
