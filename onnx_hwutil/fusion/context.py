"""What every fusion pass shares: the context it reads, the rules it is made of, and the result it returns.

A pass sees the partition and the per-node costs, never mutates the graph, and returns what it merged and
which candidates its rules turned down (with the reason), so the manager can run a list of passes to a
fixpoint and `explain` can answer for any node. Pattern kinds (TVM's OpPatternKind) decide what may join
what; every merge goes through `Partition.merge`, which refuses merges that would create a cycle in the
graph of groups.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from ..ops import NodeCost, OpKind
from .partition import Partition

ELEMENTWISE, BROADCAST, INJECTIVE, REDUCTION, MATRIX, OPAQUE, SHAPE = (
    OpKind.ELEMENTWISE, OpKind.BROADCAST, OpKind.INJECTIVE, OpKind.REDUCTION, OpKind.MATRIX, OpKind.OPAQUE,
    OpKind.SHAPE)
# Ops that read a tensor's shape, never its data: a tensor they alone read need not reach memory.
METADATA_READERS = frozenset({"Shape", "Size"})
# What the rules call a MatMul: a product of two operands with no kernel window (scale and attention rules).
MATMUL_OPS = frozenset({"MatMul", "FusedMatMul", "Einsum", "MatMulInteger", "QLinearMatMul"})


class Context:
    """What passes may look at: the graph, each node's cost, and derived structure, computed once."""

    def __init__(self, graph, costs: list[NodeCost], declared=None):
        self.graph = graph
        self.declared = declared or {}  # the file's own shapes, as BoundModel.declared: what ORT starts from
        self.cost = {nc.node.name: nc for nc in costs}
        self.outputs = set(graph.outputs)
        self.static: set[str] = set()  # filled by the shape pass: nodes folded at load time
        self.memo: dict[str, object] = {}  # what a pass derives from the graph alone, kept across rounds
        self._matching: dict[Step, list] = {}
        # Passes ask these of every node many times over (a 100k-node graph: millions of calls): plain
        # dict lookups, bound once.
        self._kind = {name: nc.cost.kind for name, nc in self.cost.items()}
        self._shape = {name for name, k in self._kind.items() if k == SHAPE}
        self.kind = self._kind.__getitem__
        self.op = {n.name: n.op_type for n in graph.nodes}.__getitem__

    def matching(self, step: Step) -> list:
        """The nodes a step may stand at, in graph order: ops and kinds never change, so a pass walks these
        instead of every node (a 100k-node graph, each pass, each round)."""
        hit = self._matching.get(step)
        if hit is None:
            pool = self.graph.nodes
            if step.ops is not None:  # only the nodes of its ops, back in graph order
                idx = self.graph.index
                pool = sorted((n for op in step.ops for n in self._by_op.get(op, ())),
                              key=lambda n: idx[n.name])
            hit = self._matching[step] = [n for n in pool if step.matches(self, n.name)]
        return hit

    @cached_property
    def _by_op(self) -> dict[str, list]:
        out: dict[str, list] = {}
        for n in self.graph.nodes:
            out.setdefault(n.op_type, []).append(n)
        return out

    @cached_property
    def names(self) -> frozenset[str]:
        return frozenset(self._kind)

    @cached_property
    def edges(self) -> list[tuple[str, str]]:
        return list(self.graph.dag.edges)

    def real(self, node: str) -> bool:
        """Does the node do work at run time (not a view, not shape math folded at load)?"""
        return node not in self._shape and node not in self.static

    def group_kind(self, part: Partition, gid: int) -> OpKind:
        kinds = [self.kind(m) for m in part.members[gid] if m not in part.folded and self.real(m)]
        return max(kinds, default=SHAPE)

    def real_members(self, part: Partition, gid: int) -> list[str]:
        return [m for m in part.members[gid] if self.real(m) and m not in part.folded]

    def data_consumers(self, part: Partition, gid: int) -> set[int] | None:
        """Groups that read data produced by `gid` (metadata readers like Shape do not count); None if a
        tensor of the group is a graph output, which must reach memory whatever follows."""
        out: set[int] = set()
        members = part.members[gid]
        inside = set(members) if len(members) > 1 else members
        by_name, consumers, group_of = self.graph.by_name, self.graph.consumers, part.group_of
        passing = self._input_views(members, inside) if len(members) > 1 else set()
        for m in members:
            if m in self.static:
                continue  # a constant once folded: whoever else reads it reads no data of ours
            if m in passing:
                if any(t in self.outputs for t in by_name[m].outputs):
                    return None
                continue  # a view of the group's input: its other readers read what was there before
            for t in by_name[m].outputs:
                if t in self.outputs:
                    return None
                for c in consumers.get(t, ()):
                    if c.name in inside or c.op_type in METADATA_READERS:
                        continue
                    # a view's group counts too: whoever reads the data joins the view's kernel
                    out.add(group_of[c.name])
        out.discard(gid)
        return out

    def _input_views(self, members: list[str], inside) -> set[str]:
        """The group's views of a tensor made outside it (a Cast to the same type that the shape pass put
        with its first reader): another kernel reading one reads data that was in memory before this one
        ran, as after ORT's CastElimination it reads the tensor itself, so it does not read our result."""
        out: set[str] = set()
        producer = self.graph.producer
        for m in members:  # in graph order: a view's producer is judged before it
            if self._kind[m] != SHAPE or m in self.static:
                continue
            prods = (producer.get(t) for t in self.graph.by_name[m].inputs if t)
            if all(p is None or p.name not in inside or p.name in out or p.name in self.static
                   for p in prods):
                out.add(m)
        return out

    def readers(self, tensor: str) -> list[str]:
        """The nodes that read a tensor, by name."""
        return [c.name for c in self.graph.consumers.get(tensor, ())]

    def single_use(self, tensor: str, what: str = "its result") -> str | None:
        """Why ORT's rewrite rules would not take the node writing `tensor` (None: they may): ORT rewrites a
        node only where its result has one reader and is no graph output."""
        if tensor in self.outputs:
            return f"{what} {tensor!r} is a graph output"
        n = len(self.graph.consumers.get(tensor, ()))
        return None if n == 1 else f"{what} {tensor!r} has {n} readers, not one"

    def sole_consumer(self, part: Partition, gid: int) -> int | None:
        cons = self.data_consumers(part, gid)
        return next(iter(cons)) if cons and len(cons) == 1 else None

    def no_sole_consumer(self, part: Partition, gid: int) -> str:
        """Why `sole_consumer` found none, for a rejection."""
        cons = self.data_consumers(part, gid)
        if cons is None:
            out = next(t for m in part.members[gid] if m not in self.static
                       for t in self.graph.by_name[m].outputs if t in self.outputs)
            return f"its result {out!r} is a graph output: it must reach memory"
        if not cons:
            return "nothing reads its result"
        firsts = sorted(part.members[g][0] for g in cons)
        return f"{len(cons)} subgraphs read its result ({', '.join(firsts[:3])}{', ...' * (len(firsts) > 3)})"

    def const_input(self, node: str, other_than: str | None = None) -> bool:
        """Some input other than `other_than` is a constant (a bias, scale or clip bound)."""
        n = self.graph.by_name[node]
        return any(t and t != other_than and self.constant(t) for t in n.inputs)

    def constant(self, tensor: str) -> bool:
        if self.graph.tensor(tensor).const:
            return True
        prod = self.graph.producer.get(tensor)
        return prod is not None and prod.name in self.static

    def scalar_operand(self, node: str) -> bool:
        """A constant scalar among its inputs: a scale a matmul can take as its alpha."""
        ins = self.graph.by_name[node].inputs
        return any(t and self.constant(t) and self.graph.tensor(t).numel == 1 for t in ins)

    @property
    def ipdom(self) -> dict[str, str]:
        """Immediate post-dominator of every node (graph.py: one per graph, whatever the preset)."""
        return self.graph.post_dominators

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

    def between(self, start: str, end: str, limit: int = 64) -> list[str] | None:
        """Nodes on paths from `start` (excluded) to `end` (included), where `end` need not post-dominate
        `start`; None if there are more than `limit`, or if one of them (before `end`) is read outside."""
        dag, idx = self.graph.dag, self.graph.index
        first = idx[start]
        # `end`'s ancestors after `start` in topological order, then those of them `start` reaches
        back: set[str] = set()
        stack = [end]
        while stack:
            for p in dag.predecessors(stack.pop()):
                if p != start and p not in back and idx[p] > first:
                    back.add(p)
                    if len(back) > 4 * limit:
                        return None
                    stack.append(p)
        inside: set[str] = set()
        stack = [s for s in dag.successors(start) if s in back or s == end]
        while stack:
            n = stack.pop()
            if n not in inside:
                inside.add(n)
                if n != end:
                    stack.extend(s for s in dag.successors(n) if s in back or s == end)
        if end not in inside or len(inside) > limit:
            return None
        if any(s not in inside for n in inside - {end} for s in dag.successors(n)):
            return None
        return sorted(inside, key=idx.__getitem__)


def group_name(part: Partition, gid: int) -> str:
    """A group as a rejection names it: its label, else its first node."""
    return part.labels.get(gid) or part.members[gid][0]


# -- rules as data ---------------------------------------------------------------------------------------

# A check sees the node a match started from (the anchor) and the node a step is about to take; it returns
# None to accept, or the reason it refuses, in words a user can act on.
Check = Callable[[Context, str, str], "str | None"]


@dataclass(frozen=True)
class Step:
    """One position of a pattern: which nodes may stand there (ops, or pattern kinds) and what else they
    must satisfy. `at_most` > 1: a run of up to that many such nodes (an attention's scale and mask)."""

    name: str
    ops: frozenset[str] | None = None  # None: any op of the kinds below
    kinds: frozenset[OpKind] | None = None  # None: any kind
    check: Check | None = None
    at_most: int = 1

    def matches(self, ctx: Context, node: str) -> bool:
        if self.ops is not None and ctx.op(node) not in self.ops:
            return False
        return self.kinds is None or ctx.kind(node) in self.kinds

    def refuses(self, ctx: Context, anchor: str, node: str) -> str | None:
        return self.check(ctx, anchor, node) if self.check else None


@dataclass(frozen=True)
class Rule:
    """A named fusion pattern: its steps in data-flow order, and what it mirrors (an ORT transformer, a
    compiler's fusion). The pass that owns it walks the graph; the steps say what may match and why not."""

    name: str
    steps: tuple[Step, ...]
    mirrors: str

    def step_for(self, ctx: Context, node: str, start: int = 0) -> Step | None:
        """The first step at or after `start` that the node may stand at."""
        return next((s for s in self.steps[start:] if s.matches(ctx, node)), None)


@dataclass(frozen=True)
class Merge:
    """One merge a rule made: the node it matched from, the step that took the last node in, the label it
    gave, and every member of the group it produced, in graph order."""

    rule: str
    anchor: str
    step: str
    nodes: tuple[str, ...]
    label: str | None = None


@dataclass(frozen=True)
class Rejection:
    """A candidate a rule turned down: the node the reason is about, and the node the match started from."""

    rule: str
    node: str
    anchor: str
    reason: str


@dataclass
class PassResult:
    """What one run of a pass changed (its merges) and what its rules refused (their rejections)."""

    pass_name: str
    merges: list[Merge] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.merges)


class FusionPass:
    name = "base"
    help = ""
    rules: tuple[Rule, ...] = ()  # the patterns it applies (none: it merges by pattern kinds alone)

    def run(self, ctx: Context, part: Partition) -> PassResult:
        """Merge what this pass recognizes; say what it merged and what it refused."""
        self.result = PassResult(self.name)
        self.apply(ctx, part)
        return self.result

    def apply(self, ctx: Context, part: Partition) -> None:
        raise NotImplementedError

    def merge(self, part: Partition, gids, rule: str, anchor: str, step: str = "",
              label: str | None = None) -> int | None:
        """`Partition.merge`, recorded when it joins two groups or more (a relabel changes nothing)."""
        gids = set(gids)
        gid = part.merge(gids, label)
        if gid is not None and len(gids) > 1:
            self.result.merges.append(Merge(rule, anchor, step, tuple(part.members[gid]), label))
        return gid

    def reject(self, rule: Rule, node: str, reason: str, anchor: str | None = None) -> None:
        self.result.rejections.append(Rejection(rule.name, node, anchor or node, reason))

    @staticmethod
    def _gids_in_order(part: Partition) -> list[int]:
        idx = part.index
        return sorted(part.members, key=lambda g: idx[part.members[g][0]])
