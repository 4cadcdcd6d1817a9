"""What every partition must satisfy after every pass, checked by the manager, not only by the tests.

A violation is a bug in our passes, never in the user's model, so it is an AssertionError (a distinct one
that names the pass and the invariant), not a HwUtilError.
"""

from __future__ import annotations

import networkx as nx

from .context import Context
from .fused import FusedGraph
from .kinds import joinable
from .partition import Partition


class InvariantViolation(AssertionError):
    def __init__(self, pass_name: str | None, invariant: str, detail: str):
        where = f"fusion pass {pass_name!r}" if pass_name else "settling the fused subgraphs"
        super().__init__(f"{where} broke the {invariant!r} invariant: {detail} (a bug in onnx-hwutil, not in "
                         "the model)")
        self.pass_name = pass_name
        self.invariant = invariant
        self.detail = detail


def check_partition(ctx: Context, part: Partition, pass_name: str) -> None:
    """After each pass: every node in exactly one group, the graph of groups acyclic, and each folded node
    in the group of a node it reads or feeds (so folding removes only work a kernel absorbed)."""

    def fail(invariant: str, detail: str):
        raise InvariantViolation(pass_name, invariant, detail)

    names = ctx.names
    listed = [m for ms in part.members.values() for m in ms]
    if len(listed) != len(names) or set(listed) != names or part.group_of.keys() != names:
        missing = sorted(names - set(listed))
        twice = sorted({m for m in listed if listed.count(m) > 1})
        fail("partition", f"every node in exactly one subgraph: missing {missing[:3]}, twice {twice[:3]}")
    stray = next((m for g, ms in part.members.items() for m in ms if part.group_of[m] != g), None)
    if stray is not None:
        fail("partition", f"{stray} is listed in one subgraph and mapped to another")

    # The partition keeps its groups in a topological order; every edge running forward in it proves the
    # graph of groups acyclic. Only when one does not is the graph of groups built to name the cycle.
    pos, g = part.pos, part.group_of
    if pos.keys() != part.members.keys() or any(pos[g[u]] > pos[g[v]] for u, v in ctx.edges):
        groups = nx.DiGraph()
        groups.add_nodes_from(part.members)
        groups.add_edges_from((part.group_of[u], part.group_of[v]) for u, v in ctx.edges
                              if part.group_of[u] != part.group_of[v])
        if not nx.is_directed_acyclic_graph(groups):
            cycle = [part.members[g][0] for g, _ in nx.find_cycle(groups)]
            fail("acyclic", f"the subgraphs of {', '.join(cycle)} feed each other in a cycle")
        fail("acyclic", "the groups' topological order is stale: a merge made outside Partition.merge")

    for m in part.folded:
        node = ctx.graph.by_name[m]
        prod = ctx.graph.producer.get(node.inputs[0]) if node.inputs else None
        readers = [c.name for t in node.outputs for c in ctx.graph.consumers.get(t, ())]
        # folded into the node it reads (BN into its Conv, a Q after a data-movement op) or into a reader
        # (the DQ of a weight that op runs on quantized)
        if all(part.group_of[x] != part.group_of[m] for x in [*([prod.name] if prod else []), *readers]):
            fail("folded", f"{m} is folded away but not into the subgraph of a node it reads or feeds")


SHAPE_PASSES = frozenset({"shape", "ort_shape"})  # the passes whose contract this is


def check_fixpoint(ctx: Context, part: Partition, chosen: list[str]) -> None:
    """Once nothing changes: no view or load-time computation is a subgraph of its own while a consumer's
    subgraph could take it without a cycle (the shape pass's contract; without that pass, views stand
    alone)."""
    if not SHAPE_PASSES & set(chosen):
        return
    for gid, members in part.members.items():
        if any(ctx.real(m) for m in members):
            continue
        for m in members:
            target = next((t for t in joinable(ctx, part, m) if not part.would_cycle({gid, t})), None)
            if target is not None:
                raise InvariantViolation("shape", "views join their consumer",
                                         f"{m} ({ctx.op(m)}) stays alone though the subgraph of "
                                         f"{part.members[target][0]} could take it")


def check_costs(fused: FusedGraph) -> None:
    """The subgraphs' MACs and FLOPs add up to the model's, less the work of the folded nodes."""
    folded = [nc.cost for nc in fused.profile.costs.nodes if nc.node.name in fused.partition.folded]
    total = fused.profile.costs.total
    for what in ("macs", "flops"):
        expected = getattr(total, what) - sum(getattr(c, what) for c in folded)
        got = sum(getattr(s, what) for s in fused.subgraphs)
        if got != expected:
            raise InvariantViolation(None, "costs", f"the subgraphs hold {got} {what}, the model {expected} "
                                     "(less what folding removes)")
