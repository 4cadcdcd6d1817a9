"""A partition of a graph's nodes into fused groups, and the merge that keeps the group graph acyclic.

The graph itself is never touched: a partition only maps node names to group ids. Passes work on a
private copy (`Partition.copy`) and hand back a new partition.

Acyclicity: the partition keeps a topological order of its groups. Merging a set S creates a cycle iff some
group outside S lies on a path from one member of S to another; such a group sits between S's first and
last positions in any topological order, so the search never needs to look past the last one. After a merge
only the groups in that window are reordered.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from ..graph import Graph


@dataclass
class Partition:
    graph: Graph
    group_of: dict[str, int]
    members: dict[int, list[str]]
    labels: dict[int, str] = field(default_factory=dict)
    folded: set[str] = field(default_factory=set)  # nodes whose work a runtime folds away (BN into Conv)
    tiled: set[int] = field(default_factory=set)  # groups that stream their intermediates in tiles
    static: set[str] = field(default_factory=set)  # shape math a runtime computes once, at load time
    order: list[int | None] = field(default_factory=list)  # groups in a topological order (None: merged away)
    pos: dict[int, int] = field(default_factory=dict)  # group -> its index in `order`
    version: int = 0  # bumped by every merge: the manager re-checks the invariants only after a change

    @classmethod
    def singletons(cls, graph: Graph) -> Partition:
        n = len(graph.nodes)
        return cls(graph, {node.name: i for i, node in enumerate(graph.nodes)},
                   {i: [node.name] for i, node in enumerate(graph.nodes)},
                   order=list(range(n)), pos={i: i for i in range(n)})

    def copy(self) -> Partition:
        return Partition(self.graph, dict(self.group_of), {k: list(v) for k, v in self.members.items()},
                         dict(self.labels), set(self.folded), set(self.tiled), set(self.static),
                         list(self.order), dict(self.pos))

    @property
    def index(self) -> dict[str, int]:
        return self.graph.index

    def successors(self, gid: int) -> set[int]:
        dag = self.graph.dag
        return {self.group_of[s] for m in self.members[gid] for s in dag.successors(m)} - {gid}

    def predecessors(self, gid: int) -> set[int]:
        dag = self.graph.dag
        return {self.group_of[p] for m in self.members[gid] for p in dag.predecessors(m)} - {gid}

    def would_cycle(self, gids: set[int]) -> bool:
        """Is there a path from one group of the set to another through a group outside it?"""
        if len(gids) < 2:
            return False
        last = max(self.pos[g] for g in gids)
        frontier = [s for g in gids for s in self.successors(g) if s not in gids]
        seen = set(frontier)
        while frontier:
            g = frontier.pop()
            if self.pos[g] > last:
                continue  # after every member in a topological order: no path leads back into the set
            for s in self.successors(g):
                if s in gids:
                    return True
                if s not in seen:
                    seen.add(s)
                    frontier.append(s)
        return False

    def merge(self, gids, label: str | None = None) -> int | None:
        """Merge groups into one (the earliest id survives); None if that would create a cycle."""
        gids = set(gids)
        if len(gids) < 2:
            g = next(iter(gids))
            if label:
                self.labels[g] = label
            return g
        lo, hi = min(self.pos[g] for g in gids), max(self.pos[g] for g in gids)
        # Groups next to each other in the topological order (the common case: an epilogue joining its
        # producer) have no group between them to close a cycle through, and the merged group keeps the
        # first one's place: no search, no reordering.
        adjacent = all(g is None or g in gids for g in self.order[lo:hi + 1])
        if not adjacent and self.would_cycle(gids):
            return None
        idx = self.index
        keep = self.order[lo]
        merged = []
        for g in gids:
            merged.extend(self.members.pop(g))
            if g != keep:
                self.labels.pop(g, None)
                self.order[self.pos.pop(g)] = None
                if g in self.tiled:
                    self.tiled.discard(g)
                    self.tiled.add(keep)
        merged.sort(key=idx.__getitem__)
        self.members[keep] = merged
        for m in merged:
            self.group_of[m] = keep
        if label:
            self.labels[keep] = label
        if not adjacent:
            self._reorder(lo, hi)
        self.version += 1
        return keep

    def _reorder(self, lo: int, hi: int) -> None:
        """Restore a topological order inside order[lo:hi+1]; groups outside the window are unaffected."""
        window = [g for g in self.order[lo:hi + 1] if g is not None]
        inside = set(window)
        indegree = {g: 0 for g in window}
        succ = {g: [s for s in self.successors(g) if s in inside] for g in window}
        for g in window:
            for s in succ[g]:
                indegree[s] += 1
        # Kahn's algorithm, ties broken by the old order so that unrelated groups keep their places.
        ready = [(i, g) for i, g in enumerate(window) if indegree[g] == 0]
        rank = {g: i for i, g in enumerate(window)}
        heapq.heapify(ready)
        out = []
        while ready:
            _, g = heapq.heappop(ready)
            out.append(g)
            for s in succ[g]:
                indegree[s] -= 1
                if indegree[s] == 0:
                    heapq.heappush(ready, (rank[s], s))
        assert len(out) == len(window), "merge produced a cycle despite the check"
        slots = [i for i in range(lo, hi + 1) if self.order[i] is not None]
        for i, g in zip(slots, out, strict=True):
            self.order[i] = g
            self.pos[g] = i
