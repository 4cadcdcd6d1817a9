"""Why a node landed where it did: the rule that took it and the subgraph it joined, or, for every rule
that could have taken it, why it did not (the reasons the rules recorded in the last round, when nothing
changed any more and so every reason describes the final partition)."""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass
from itertools import groupby

from ..errors import HwUtilError
from ..profile import Profile
from .context import Context, Merge
from .manager import PASSES, run_passes
from .ort_fold import why_it_runs


@dataclass(frozen=True)
class Candidate:
    """A rule whose steps the node's op matches: whether it took the node, and if not, why."""

    rule: str
    pass_name: str
    mirrors: str
    steps: tuple[str, ...]  # the steps the node could have stood at
    took: bool
    reasons: tuple[str, ...]  # "at NODE: reason" where the reason is about another node of the match


# The folded ops that fold into no weights: rewrite rules drop them (PadFusion, FuseReluClip, DivMulFusion,
# NotWhereFusion), the node they feed taking their part.
DROPPED = frozenset({"Pad", "Relu", "Div", "Not"})


@dataclass(frozen=True)
class Explanation:
    node: str
    op_type: str
    preset: str
    passes: tuple[str, ...]
    subgraph: int
    label: str
    members: tuple[str, ...]
    kernel: bool  # does the subgraph launch anything (views and load-time shape math do not)
    folded: bool  # its work is folded into another node's weights at load
    merges: tuple[tuple[str, Merge], ...]  # (pass, merge) that built its subgraph, in the order they ran
    candidates: tuple[Candidate, ...]
    runs: str | None = None  # why ORT runs shape math another runtime would fold at load (ort_fold)

    @property
    def fused(self) -> bool:
        return len(self.members) > 1

    def lines(self) -> list[str]:
        where = f"subgraph {self.subgraph} {self.label!r}"
        if self.fused:
            out = [f"{self.node} ({self.op_type}) is in {where} under preset {self.preset}, with "
                   f"{len(self.members) - 1} other node(s): {', '.join(self.members)}"]
        else:
            what = "a kernel of its own" if self.kernel else "alone, and launches nothing (no run-time work)"
            out = [f"{self.node} ({self.op_type}) is {what}: {where} under preset {self.preset}"]
        if self.folded and self.op_type in DROPPED:
            out.append("  dropped by an ORT rewrite rule, the node it feeds taking its part: its work "
                       "disappears")
        elif self.folded:
            out.append("  folded into the weights of the node it reads, at load: its work disappears")
        if self.runs:
            out.append(f"  {self.runs}")
        # a run of merges by one rule step (views joining one by one) reads as one line
        runs = [list(g) for _, g in groupby(self.merges, key=lambda pm: (pm[0], pm[1].rule, pm[1].step))]
        for i, run in enumerate(runs):
            p, m = run[0]
            step = f", step {m.step}" if m.step else ""
            label = f" as {m.label!r}" if m.label else ""
            start = f"matched from {m.anchor}" if len(run) == 1 else f"{len(run)} merges, from {m.anchor} on"
            out.append(f"  {'merged' if i == 0 else 'then grown'} by rule {m.rule} (pass {p}{step}, {start})"
                       f"{label}: {len(run[-1][1].nodes)} nodes")
        for c in self.candidates:
            if not c.reasons and (c.took or self.merges):
                continue  # a rule that took it, or one that never met it while another did
            head = f"  rule {c.rule} (pass {c.pass_name}; step {'/'.join(c.steps)})"
            if not c.reasons:
                out.append(f"{head}: never reached it (no match started at it or passed through it)")
            out += [f"{head}: {r}" for r in c.reasons]
        if not self.passes:
            out.append(f"  preset {self.preset} runs no fusion passes")
        elif not self.merges and not self.candidates:
            out.append(f"  no rule of the passes run ({', '.join(self.passes)}) has a step for a "
                       f"{self.op_type}")
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["merges"] = [{"pass": p, **asdict(m)} for p, m in self.merges]
        d["fused"] = self.fused
        return d


def explain(profile: Profile, node_name: str, preset: str | None = None, passes: list[str] | None = None,
            disable: list[str] | None = None) -> Explanation:
    """Which rule took `node_name` and the subgraph it landed in, or why each rule that could have did
    not. An unknown name is the user's error, told with the closest names the graph has."""
    graph = profile.graph
    if node_name not in graph.by_name:
        close = difflib.get_close_matches(node_name, list(graph.by_name), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else \
            f"node names look like {', '.join(n.name for n in graph.nodes[:3])}"
        raise HwUtilError(f"no node named {node_name!r} in {profile.bound.path}; {hint}")
    fused, rounds = run_passes(profile, preset, passes, disable)
    sub = next(s for s in fused.subgraphs if node_name in s.nodes)
    merges = tuple((r.pass_name, m) for rs in rounds for r in rs for m in r.merges if node_name in m.nodes)
    ctx = Context(graph, profile.costs.nodes, profile.bound.declared)
    candidates = []
    for p in dict.fromkeys(fused.passes):
        for rule in PASSES[p].rules:
            steps = tuple(s.name for s in rule.steps if s.matches(ctx, node_name))
            if not steps:
                continue
            reasons = tuple(dict.fromkeys(j.reason if j.node == node_name else f"at {j.node}: {j.reason}"
                                          for r in rounds[-1] if r.pass_name == p for j in r.rejections
                                          if j.rule == rule.name and node_name in (j.node, j.anchor)))
            took = any(m.rule == rule.name for _, m in merges)
            candidates.append(Candidate(rule.name, p, rule.mirrors, steps, took, reasons))
    runs = why_it_runs(ctx, node_name) if "ort_shape" in fused.passes else None
    return Explanation(node_name, graph.by_name[node_name].op_type, fused.preset, tuple(fused.passes),
                       sub.id, sub.label, sub.nodes, sub.is_kernel, node_name in sub.folded, merges,
                       tuple(candidates), runs)
