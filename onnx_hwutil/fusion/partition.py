"""A partition of a graph's nodes into fused groups, and the merge that keeps the group graph acyclic.

The graph itself is never touched: a partition only maps node names to group ids. Passes work on a
private copy (`Partition.copy`) and hand back a new partition.
"""

from __future__ import annotations

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
    merges: int = 0  # merges done so far: how passes report whether they changed anything

    @classmethod
    def singletons(cls, graph: Graph) -> Partition:
        group_of = {n.name: i for i, n in enumerate(graph.nodes)}
        return cls(graph, group_of, {i: [n.name] for i, n in enumerate(graph.nodes)})

    def copy(self) -> Partition:
        return Partition(self.graph, dict(self.group_of), {k: list(v) for k, v in self.members.items()},
                         dict(self.labels), set(self.folded), set(self.tiled), set(self.static))

    @property
    def index(self) -> dict[str, int]:
        return self.graph.index

    def successors(self, gid: int) -> set[int]:
        dag = self.graph.dag
        return {self.group_of[s] for m in self.members[gid] for s in dag.successors(m)} - {gid}

    def predecessors(self, gid: int) -> set[int]:
        dag = self.graph.dag
        return {self.group_of[p] for m in self.members[gid] for p in dag.predecessors(m)} - {gid}

    def _min_index(self, gid: int) -> int:
        idx = self.index
        return min(idx[m] for m in self.members[gid])

    def would_cycle(self, gids: set[int]) -> bool:
        """Merging `gids` creates a cycle iff one of them reaches another through a group outside the set."""
        if len(gids) < 2:
            return False
        idx = self.index
        bound = max(idx[m] for g in gids for m in self.members[g])
        frontier = [s for g in gids for s in self.successors(g) if s not in gids]
        seen = set(frontier)
        while frontier:
            g = frontier.pop()
            if self._min_index(g) > bound:
                continue  # every node of g comes after every node of the set: it cannot lead back
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
        if self.would_cycle(gids):
            return None
        keep = min(gids, key=self._min_index)
        idx = self.index
        merged = []
        for g in gids:
            merged.extend(self.members.pop(g))
            if g != keep:
                self.labels.pop(g, None)
                if g in self.tiled:
                    self.tiled.discard(g)
                    self.tiled.add(keep)
        merged.sort(key=idx.__getitem__)
        self.merges += 1
        self.members[keep] = merged
        for m in merged:
            self.group_of[m] = keep
        if label:
            self.labels[keep] = label
        return keep
