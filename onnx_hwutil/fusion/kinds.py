"""Passes that merge by pattern kinds, not by patterns: shape folding, and the compiler-style what-ifs
(epilogues, elementwise chains, TVM's post-dominator fusion). They have no rules to reject candidates by;
their merges are recorded under the pass's own name."""

from __future__ import annotations

from .context import (
    BROADCAST,
    INJECTIVE,
    MATRIX,
    METADATA_READERS,
    OPAQUE,
    REDUCTION,
    SHAPE,
    Context,
    FusionPass,
)
from .partition import Partition


class ShapePass(FusionPass):
    name = "shape"
    help = "shape-only ops and static shape computations cost nothing and join their consumer"
    keep: frozenset[str] = frozenset()  # ops the runtime never computes at load, whatever their inputs

    def load_time(self, ctx: Context) -> set[str]:
        return load_time(ctx, self.keep)

    def apply(self, ctx: Context, part: Partition) -> None:
        static = self.load_time(ctx)
        key = ("movable", self.keep)
        if key not in ctx.memo:  # load-time nodes and views
            ctx.memo[key] = static | {n.name for n in ctx.graph.nodes if ctx.kind(n.name) == SHAPE}
        ctx.static |= static
        part.static |= static
        join_consumers(ctx, part, ctx.memo[key],
                       lambda gids, node: self.merge(part, gids, self.name, node, "consumer"))


def load_time(ctx: Context, keep: frozenset[str] = frozenset()) -> set[str]:
    """Nodes a runtime computes once, at load, once shapes are known: Shape/Size, constants, and ops on
    them only, except the ops in `keep`. A property of the graph alone: found once per context, whatever
    the rounds."""
    key = ("load_time", keep)
    static = ctx.memo.get(key)
    if static is None:
        static = set()
        for n in ctx.graph.nodes:  # in execution order: a node's producers are judged before it
            if n.op_type not in keep and _static(ctx, n, static):
                static.add(n.name)
        ctx.memo[key] = static
    return static


def _static(ctx: Context, node, static: set[str]) -> bool:
    """Computable at load time once shapes are known, given the nodes already found so."""
    if node.op_type in METADATA_READERS or (node.op_type == "Constant" and not node.inputs):
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


def join_consumers(ctx: Context, part: Partition, movable: set[str], merge) -> None:
    """Each group made only of `movable` nodes joins the first consumer's group it can join without a
    cycle; `merge(gids, node)` merges (None where it would close a cycle)."""
    for n in reversed(ctx.graph.nodes):
        if n.name not in movable:
            continue
        gid = part.group_of[n.name]
        if any(m not in movable for m in part.members[gid]):
            continue  # already part of a real kernel
        for target in joinable(ctx, part, n.name):
            if merge({gid, target}, n.name) is not None:
                break  # joined the first consumer it can join without a cycle


def joinable(ctx: Context, part: Partition, node: str) -> list[int]:
    """The groups of a node's consumers other than its own, first consumer first: where a view or a
    load-time computation goes (the shape pass, and its postcondition, read this one list)."""
    n = ctx.graph.by_name[node]
    consumers = sorted({c.name for t in n.outputs for c in ctx.graph.consumers.get(t, ())},
                       key=part.index.__getitem__)
    gid = part.group_of[node]
    return [part.group_of[c] for c in consumers if part.group_of[c] != gid]


class EpiloguePass(FusionPass):
    name = "epilogue"
    help = "matrix op + the elementwise/broadcast chain after it: bias, activation, residual add, quantize"

    def apply(self, ctx: Context, part: Partition) -> None:
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
                merged = self.merge(part, {gid, nxt}, "epilogue", n.name)
                if merged is None:
                    break
                gid = merged


class ElementwisePass(FusionPass):
    name = "elementwise"
    help = "chains of elementwise/injective ops, ending at most in a reduction"

    def apply(self, ctx: Context, part: Partition) -> None:
        for gid in self._gids_in_order(part):
            if gid not in part.members:
                continue
            anchor = part.members[gid][0]
            while ctx.group_kind(part, gid) <= INJECTIVE and ctx.real_members(part, gid):
                nxt = ctx.sole_consumer(part, gid)
                if nxt is None or ctx.group_kind(part, nxt) > REDUCTION:
                    break
                reduction = ctx.group_kind(part, nxt) == REDUCTION
                if reduction and not self._single_input_group(ctx, part, nxt, gid):
                    break
                merged = self.merge(part, {gid, nxt}, "elementwise", anchor)
                if merged is None:
                    break
                gid = merged

    @staticmethod
    def _single_input_group(ctx, part, gid, producer) -> bool:
        return part.predecessors(gid) <= {producer} | {part.group_of[m] for m in part.members[gid]}


class AggressivePass(FusionPass):
    name = "aggressive"
    help = "TVM FuseOps: every op fuses with its post-dominator where the pattern kinds allow"

    def apply(self, ctx: Context, part: Partition) -> None:
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
                self.merge(part, region_gids | {gid}, "post-dominator", n.name)
