"""Fusion passes: each merges groups of a partition where a runtime would emit one kernel.

A pass sees the partition and the per-node costs, never mutates the graph, and says whether it changed
anything, so the manager can run a list of passes to a fixpoint. Pattern kinds (TVM's OpPatternKind) decide
what may join what; every merge goes through `Partition.merge`, which refuses merges that would create a
cycle in the graph of groups.
"""

from __future__ import annotations

from functools import cached_property

import networkx as nx

from ..ops import NodeCost, OpKind
from .partition import Partition

ELEMENTWISE, BROADCAST, INJECTIVE, REDUCTION, MATRIX, OPAQUE, SHAPE = (
    OpKind.ELEMENTWISE, OpKind.BROADCAST, OpKind.INJECTIVE, OpKind.REDUCTION, OpKind.MATRIX, OpKind.OPAQUE,
    OpKind.SHAPE)
_METADATA_READERS = {"Shape", "Size"}
_ACTIVATIONS = {"Relu", "Clip", "Sigmoid", "LeakyRelu", "Tanh", "HardSigmoid", "HardSwish"}
_NORM_SIGNATURE = {"Erf", "Tanh", "Exp", "Sqrt", "Pow", "ReduceMean", "ReduceSum", "ReduceMax", "Reciprocal",
                   "ReduceSumSquare", "ReduceL2"}
_SOFTMAX = {"Softmax", "LogSoftmax"}
_MATMUL = {"MatMul", "FusedMatMul", "Einsum", "MatMulInteger", "QLinearMatMul"}


class Context:
    """What passes may look at: the graph, each node's cost, and derived structure, computed once."""

    def __init__(self, graph, costs: list[NodeCost]):
        self.graph = graph
        self.cost = {nc.node.name: nc for nc in costs}
        self.outputs = set(graph.outputs)
        self.static: set[str] = set()  # filled by the shape pass: nodes folded at load time

    def kind(self, node: str) -> OpKind:
        return self.cost[node].cost.kind

    def op(self, node: str) -> str:
        return self.graph.by_name[node].op_type

    def real(self, node: str) -> bool:
        """Does the node do work at run time (not a view, not shape math folded at load)?"""
        return self.kind(node) != SHAPE and node not in self.static

    def group_kind(self, part: Partition, gid: int) -> OpKind:
        kinds = [self.kind(m) for m in part.members[gid] if m not in part.folded and self.real(m)]
        return max(kinds, default=SHAPE)

    def real_members(self, part: Partition, gid: int) -> list[str]:
        return [m for m in part.members[gid] if self.real(m) and m not in part.folded]

    def data_consumers(self, part: Partition, gid: int) -> set[int] | None:
        """Groups that read data produced by `gid` (metadata readers like Shape do not count); None if a
        tensor of the group is a graph output, which must reach memory whatever follows."""
        out: set[int] = set()
        members = set(part.members[gid])
        for m in members:
            if m in self.static:
                continue  # a constant once folded: whoever else reads it reads no data of ours
            for t in self.graph.by_name[m].outputs:
                if t in self.outputs:
                    return None
                for c in self.graph.consumers.get(t, ()):
                    if c.name in members or c.op_type in _METADATA_READERS:
                        continue
                    if not self.real(c.name):  # a view: follow it to whoever reads the data
                        vg = part.group_of[c.name]
                        if vg != gid:
                            out.add(vg)
                        continue
                    out.add(part.group_of[c.name])
        return out

    def sole_consumer(self, part: Partition, gid: int) -> int | None:
        cons = self.data_consumers(part, gid)
        return next(iter(cons)) if cons and len(cons) == 1 else None

    def const_input(self, node: str, other_than: str | None = None) -> bool:
        """Some input other than `other_than` is a constant (a bias, scale or clip bound)."""
        n = self.graph.by_name[node]
        return any(t and t != other_than and self.constant(t) for t in n.inputs)

    def constant(self, tensor: str) -> bool:
        if self.graph.tensor(tensor).const:
            return True
        prod = self.graph.producer.get(tensor)
        return prod is not None and prod.name in self.static

    @cached_property
    def ipdom(self) -> dict[str, str]:
        """Immediate post-dominator of every node (a virtual sink after the graph outputs)."""
        rev = self.graph.dag.reverse(copy=True)
        sink = "\0sink"
        rev.add_node(sink)
        for n in self.graph.nodes:
            if self.graph.dag.out_degree(n.name) == 0 or any(o in self.outputs for o in n.outputs):
                rev.add_edge(sink, n.name)
        dom = nx.immediate_dominators(rev, sink)
        return {k: v for k, v in dom.items() if k != sink and v != sink}

    def region(self, start: str, end: str, limit: int = 64) -> list[str] | None:
        """Nodes on paths from `start` (excluded) to its post-dominator `end` (included)."""
        seen: set[str] = set()
        stack = [s for s in self.graph.dag.successors(start)]
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if len(seen) > limit:
                return None
            if n != end:
                stack.extend(self.graph.dag.successors(n))
        return sorted(seen, key=self.graph.index.__getitem__)


class FusionPass:
    name = "base"
    help = ""

    def run(self, ctx: Context, part: Partition) -> None:
        """Merge what this pass recognizes (part.merges counts what it did)."""
        raise NotImplementedError

    @staticmethod
    def _gids_in_order(part: Partition) -> list[int]:
        idx = part.index
        return sorted(part.members, key=lambda g: idx[part.members[g][0]])


class ShapePass(FusionPass):
    name = "shape"
    help = "shape-only ops and static shape computations cost nothing and join their consumer"

    @staticmethod
    def _static(ctx: Context, node, static: set[str]) -> bool:
        """Computable at load time once shapes are known: Shape/Size, constants, and ops on them only."""
        if node.op_type in _METADATA_READERS or (node.op_type == "Constant" and not node.inputs):
            return True
        if ctx.kind(node.name) == MATRIX or not any(node.inputs) or node.subgraphs():
            return False  # matrix work, generators (random), and control flow whose bodies read data
        for t in node.inputs:
            if not t:
                continue
            prod = ctx.graph.producer.get(t)
            if not (ctx.graph.tensor(t).const or (prod is not None and prod.name in static)):
                return False
        return True

    def run(self, ctx: Context, part: Partition) -> None:
        static: set[str] = set()
        for n in ctx.graph.nodes:  # a runtime folds these once, at load
            if self._static(ctx, n, static):
                static.add(n.name)
        ctx.static |= static
        part.static |= static
        movable = static | {n.name for n in ctx.graph.nodes if ctx.kind(n.name) == SHAPE}  # + views
        for n in reversed(ctx.graph.nodes):
            if n.name not in movable:
                continue
            gid = part.group_of[n.name]
            if any(m not in movable for m in part.members[gid]):
                continue  # already part of a real kernel
            consumers = sorted({c.name for t in n.outputs for c in ctx.graph.consumers.get(t, ())},
                               key=part.index.__getitem__)
            for c in consumers:
                target = part.group_of[c]
                if target != gid and part.merge({gid, target}) is not None:
                    break  # joined the first consumer it can join without a cycle


class ConvBnPass(FusionPass):
    name = "conv_bn"
    help = "fold BatchNormalization into the preceding Conv/ConvTranspose/Gemm (its work disappears)"

    def run(self, ctx: Context, part: Partition) -> None:
        for n in ctx.graph.nodes:
            if n.op_type != "BatchNormalization" or n.name in part.folded or len(n.inputs) < 5:
                continue
            prod = ctx.graph.producer.get(n.inputs[0])
            if prod is None or prod.op_type not in ("Conv", "ConvTranspose", "Gemm"):
                continue
            # Folding rewrites the weights at load: they and BN's statistics must be constants, and the
            # conv's own output must not be needed by anyone else (another node or the graph's outputs).
            if not all(ctx.constant(t) for t in (*n.inputs[1:5], *prod.inputs[1:]) if t):
                continue
            if [c.name for c in ctx.graph.consumers.get(n.inputs[0], ())] != [n.name] \
                    or n.inputs[0] in ctx.outputs:
                continue
            if part.merge({part.group_of[prod.name], part.group_of[n.name]}) is not None:
                part.folded.add(n.name)


class ActivationPass(FusionPass):
    name = "activation"
    help = ("matrix op + constant bias add, constant scale and one activation: ONNX Runtime's CPU fusions "
            "(ConvActivation, MatMulAdd, MatMulScale, GemmActivation)")

    def run(self, ctx: Context, part: Partition) -> None:
        for n in ctx.graph.nodes:
            gid = part.group_of[n.name]
            if ctx.kind(n.name) != MATRIX or ctx.real_members(part, gid)[-1] != n.name:
                continue  # has an epilogue already: this pass takes one per matrix op, once
            stage = 0  # 0: bias, 1: scale, 2: activation, 3: done
            while stage < 3:
                nxt = ctx.sole_consumer(part, gid)
                real = ctx.real_members(part, nxt) if nxt is not None else []
                if len(real) != 1:
                    break
                c = real[0]
                op = ctx.op(c)
                if stage <= 0 and op == "Add" and ctx.const_input(c) and self._same_shape(ctx, n, c):
                    stage = 1  # a bias: a constant that broadcasts into the output, not one that grows it
                elif stage <= 1 and op in ("Mul", "Div") and n.op_type in _MATMUL and self._scalar(ctx, c):
                    stage = 2
                elif op in _ACTIVATIONS and (op != "Clip" or ctx.const_input(c)
                                             or len(ctx.graph.by_name[c].inputs) == 1):
                    stage = 3
                else:
                    break
                merged = part.merge({gid, nxt})
                if merged is None:
                    break
                gid = merged

    @staticmethod
    def _same_shape(ctx: Context, matrix, node: str) -> bool:
        out = ctx.graph.by_name[node].outputs[0]
        return ctx.graph.tensor(out).shape == ctx.graph.tensor(matrix.outputs[0]).shape

    @staticmethod
    def _scalar(ctx: Context, node: str) -> bool:
        ins = ctx.graph.by_name[node].inputs
        return any(t and ctx.constant(t) and ctx.graph.tensor(t).numel == 1 for t in ins)


class OperandPass(FusionPass):
    name = "operand"
    help = ("what ONNX Runtime folds into a matmul's operands and siblings: a last-two-dims Transpose or a "
            "constant scalar scale feeding a MatMul (FusedMatMul transA/transB/alpha), and sibling Gathers "
            "of one tensor at constant indices (one Split)")

    def run(self, ctx: Context, part: Partition) -> None:
        for n in ctx.graph.nodes:
            if n.op_type == "MatMul":
                for t in n.inputs[:2]:
                    self._absorb(ctx, part, n, ctx.graph.producer.get(t))
        self._splits(ctx, part)

    @staticmethod
    def _absorb(ctx: Context, part: Partition, mm, prod) -> None:
        if prod is None or not ctx.real(prod.name):
            return
        if len(ctx.real_members(part, part.group_of[prod.name])) != 1:
            return  # already part of another kernel (a GELU's final x0.5, say)
        if ctx.sole_consumer(part, part.group_of[prod.name]) != part.group_of[mm.name]:
            return
        if prod.op_type == "Transpose":
            perm = prod.attr("perm") or []
            perm = list(perm) if isinstance(perm, list) and all(isinstance(p, int) for p in perm) else []
            rank = len(perm)
            ok = rank >= 2 and perm[:-2] == list(range(rank - 2)) and perm[-2:] == [rank - 1, rank - 2]
        elif prod.op_type in ("Mul", "Div"):
            ok = ActivationPass._scalar(ctx, prod.name)
        else:
            ok = False
        if ok:
            part.merge({part.group_of[prod.name], part.group_of[mm.name]})

    @staticmethod
    def _splits(ctx: Context, part: Partition) -> None:
        for t, readers in ctx.graph.consumers.items():
            gathers = [r for r in readers if r.op_type == "Gather" and r.inputs[0] == t and ctx.real(r.name)
                       and ctx.constant(r.inputs[1]) and ctx.graph.tensor(r.inputs[1]).numel == 1]
            if len(gathers) > 1:
                part.merge({part.group_of[g.name] for g in gathers}, label="Split")


class EpiloguePass(FusionPass):
    name = "epilogue"
    help = "matrix op + the elementwise/broadcast chain after it: bias, activation, residual add, quantize"

    def run(self, ctx: Context, part: Partition) -> None:
        for n in ctx.graph.nodes:
            if ctx.kind(n.name) != MATRIX:
                continue
            gid = part.group_of[n.name]
            if ctx.group_kind(part, gid) != MATRIX or part.labels.get(gid, "").startswith("Attention"):
                continue
            while True:
                nxt = ctx.sole_consumer(part, gid)
                if nxt is None or ctx.group_kind(part, nxt) > BROADCAST:
                    break
                merged = part.merge({gid, nxt})
                if merged is None:
                    break
                gid = merged


class ElementwisePass(FusionPass):
    name = "elementwise"
    help = "chains of elementwise/injective ops, ending at most in a reduction"

    def run(self, ctx: Context, part: Partition) -> None:
        for gid in self._gids_in_order(part):
            if gid not in part.members:
                continue
            while ctx.group_kind(part, gid) <= INJECTIVE and ctx.real_members(part, gid):
                nxt = ctx.sole_consumer(part, gid)
                if nxt is None or ctx.group_kind(part, nxt) > REDUCTION:
                    break
                reduction = ctx.group_kind(part, nxt) == REDUCTION
                if reduction and not self._single_input_group(ctx, part, nxt, gid):
                    break
                merged = part.merge({gid, nxt})
                if merged is None:
                    break
                gid = merged

    @staticmethod
    def _single_input_group(ctx, part, gid, producer) -> bool:
        return part.predecessors(gid) <= {producer} | {part.group_of[m] for m in part.members[gid]}


class NormPass(FusionPass):
    name = "norm"
    help = ("decomposed LayerNorm/RMSNorm/Softmax/GELU patterns into one kernel; a residual Add feeding "
            "only a LayerNorm joins it (SkipLayerNorm)")

    def run(self, ctx: Context, part: Partition) -> None:
        norm_groups: set[int] = set()
        for n in ctx.graph.nodes:
            if not ctx.real(n.name):
                continue
            readers = {c.name for t in n.outputs for c in ctx.graph.consumers.get(t, ()) if ctx.real(c.name)}
            if len(readers) < 2:
                continue
            end = ctx.ipdom.get(n.name)
            region = ctx.region(n.name, end) if end else None
            if not region or len(region) < 2:
                continue
            ops = {ctx.op(m) for m in region}
            if not ops & _NORM_SIGNATURE:
                continue
            if any(ctx.kind(m) not in (ELEMENTWISE, BROADCAST, REDUCTION, SHAPE) for m in region):
                continue
            gids = {part.group_of[m] for m in region}
            if part.group_of[n.name] in norm_groups:  # the second half of a pattern (LayerNorm's variance)
                gids.add(part.group_of[n.name])
            gid = part.merge(gids, label=self._label(ctx, part, gids, ops))
            if gid is None:
                continue
            gid = self._tail(ctx, part, gid)
            norm_groups.add(gid)
        self._skip(ctx, part, norm_groups)

    @staticmethod
    def _label(ctx, part, gids, ops) -> str:
        old = {ctx.op(m) for g in gids for m in part.members[g]} | ops
        if "Erf" in old or "Tanh" in old:
            return "Gelu"
        if "Exp" in old and ("ReduceSum" in old or "ReduceMax" in old):
            return "Softmax"
        if "Sub" in old and "ReduceMean" in old:
            return "LayerNorm"
        if "ReduceMean" in old or "ReduceSumSquare" in old:
            return "RMSNorm"
        return "Norm"

    @staticmethod
    def _tail(ctx: Context, part: Partition, gid: int) -> int:
        """Constant-operand elementwise ops right after (GELU's x0.5, LayerNorm's gamma and beta)."""
        label = part.labels.get(gid)
        while True:
            nxt = ctx.sole_consumer(part, gid)
            real = ctx.real_members(part, nxt) if nxt is not None else []
            if len(real) != 1 or ctx.kind(real[0]) > BROADCAST or not ctx.const_input(real[0]):
                return gid
            merged = part.merge({gid, nxt}, label=label)
            if merged is None:
                return gid
            gid = merged

    @staticmethod
    def _skip(ctx: Context, part: Partition, norm_groups: set[int]) -> None:
        for n in ctx.graph.nodes:
            is_ln = n.op_type in ("LayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization")
            gid = part.group_of[n.name]
            if not is_ln and not (gid in norm_groups and part.labels.get(gid) in ("LayerNorm", "RMSNorm")):
                continue
            if (is_ln and len(ctx.real_members(part, gid)) > 1) or not n.inputs:
                continue
            prod = ctx.graph.producer.get(n.inputs[0])
            if prod is None or prod.op_type != "Add" or ctx.const_input(prod.name):
                continue
            pg = part.group_of[prod.name]
            if len(ctx.real_members(part, pg)) != 1 or ctx.sole_consumer(part, pg) != gid:
                continue
            part.merge({pg, gid}, label="SkipLayerNorm")


class AttentionPass(FusionPass):
    name = "attention"
    help = ("QK^T, scale, mask, Softmax and xV into one kernel whose score matrix never reaches DRAM "
            "(the flash-attention what-if)")

    def run(self, ctx: Context, part: Partition) -> None:
        for n in ctx.graph.nodes:
            if n.op_type not in _SOFTMAX:
                continue
            gids = {part.group_of[n.name]}
            # back: elementwise (scale, mask) to the QK^T matmul
            cur = n
            qk = None
            for _ in range(6):
                prod = ctx.graph.producer.get(cur.inputs[0]) if cur.inputs else None
                if prod is None:
                    break
                if prod.op_type in _MATMUL:
                    qk = prod
                    break
                if ctx.kind(prod.name) > BROADCAST:
                    break
                gids.add(part.group_of[prod.name])
                cur = prod
            # forward: through casts/dropouts/views to the xV matmul that reads the probabilities
            av = None
            cur = n
            for _ in range(4):
                readers = [c for t in cur.outputs if t for c in ctx.graph.consumers.get(t, ())]
                if len(readers) != 1:
                    break
                r = readers[0]
                if r.op_type in _MATMUL:
                    av = r
                    break
                if ctx.kind(r.name) > BROADCAST and ctx.kind(r.name) != SHAPE:
                    break
                gids.add(part.group_of[r.name])
                cur = r
            if qk is None or av is None:
                continue
            gids |= {part.group_of[qk.name], part.group_of[av.name]}
            gid = part.merge(gids, label="Attention")
            if gid is not None:
                part.tiled.add(gid)


class AggressivePass(FusionPass):
    name = "aggressive"
    help = "TVM FuseOps: every op fuses with its post-dominator where the pattern kinds allow"

    def run(self, ctx: Context, part: Partition) -> None:
        for n in ctx.graph.nodes:
            if not ctx.real(n.name):
                continue
            end = ctx.ipdom.get(n.name)
            if end is None:
                continue
            gid = part.group_of[n.name]
            if part.group_of[end] == gid:
                continue
            kind = ctx.group_kind(part, gid)
            if kind >= OPAQUE or part.labels.get(gid) == "Attention":
                continue
            region = ctx.region(n.name, end)
            if region is None:
                continue
            region_gids = {part.group_of[m] for m in region} - {gid}
            kinds = [ctx.group_kind(part, g) for g in region_gids]
            if kind == MATRIX:
                ok = all(k <= BROADCAST for k in kinds)
            elif kind <= INJECTIVE:
                path = [ctx.group_kind(part, part.group_of[m]) for m in region if m != end]
                sink = ctx.group_kind(part, part.group_of[end])
                ok = all(k <= INJECTIVE for k in path) and sink <= REDUCTION
            elif kind == REDUCTION:
                ok = all(k <= BROADCAST for k in kinds)
            else:
                ok = False
            if ok:
                part.merge(region_gids | {gid})


PASSES: dict[str, type[FusionPass]] = {p.name: p for p in (
    ShapePass, ConvBnPass, OperandPass, ActivationPass, EpiloguePass, ElementwisePass, NormPass,
    AttentionPass, AggressivePass)}
