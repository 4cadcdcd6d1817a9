"""What changed between two versions of a model: counts, kernels and their time on each chip.

Nodes are aligned by name first (most exporters keep module paths stable), then, among the rest, by
structure: the sequence of (op type, input and weight shapes) of each graph in execution order, matched with
difflib's longest-common-subsequence, so a renamed or inserted layer does not shift everything after it.
A pair of the same op type that difflib can only align as a replacement (a Conv whose width changed) is a
changed node. Kernels follow their nodes: a new kernel is paired with the old kernel most of its aligned
nodes came from; the rest are added or removed.
"""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass

from .analysis import Analyzer, Point
from .fusion import for_chip
from .graph import Graph, Node
from .profile import SCHEMA


@dataclass(frozen=True)
class Alignment:
    pairs: dict[str, str]  # new node -> old node
    by_name: int
    by_structure: int
    changed: list[tuple[str, str]]  # (old, new) of the same op type whose shapes differ
    added: list[str]
    removed: list[str]


def _signature(g: Graph, n: Node) -> tuple:
    shapes = tuple(g.tensor(t).shape if t else None for t in n.inputs)
    return (n.domain, n.op_type, shapes, tuple(g.tensor(t).shape for t in n.outputs if t))


def align(old: Graph, new: Graph) -> Alignment:
    old_names = {n.name: n for n in old.nodes}
    # Only names the file wrote count: an unnamed node's generated name (Conv_2) is its position, and
    # positions shift when a layer is inserted.
    pairs = {n.name: n.name for n in new.nodes
             if n.proto.name and n.name in old_names and old_names[n.name].proto.name
             and old_names[n.name].op_type == n.op_type}
    by_name = len(pairs)
    rest_old = [n for n in old.nodes if n.name not in pairs.values()]
    rest_new = [n for n in new.nodes if n.name not in pairs]
    a = [_signature(old, n) for n in rest_old]
    b = [_signature(new, n) for n in rest_new]
    changed: list[tuple[str, str]] = []
    by_structure = 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
                pairs[rest_new[j].name] = rest_old[i].name
                by_structure += 1
        elif tag == "replace":  # the same ops in the same order, other shapes: layers that changed
            ops = difflib.SequenceMatcher(None, [x[:2] for x in a[i1:i2]], [x[:2] for x in b[j1:j2]],
                                          autojunk=False)
            for blk in ops.get_matching_blocks():
                for k in range(blk.size):
                    o, n = rest_old[i1 + blk.a + k].name, rest_new[j1 + blk.b + k].name
                    pairs[n] = o
                    changed.append((o, n))
    # Name-matched nodes whose shapes differ changed too.
    changed += [(o, n) for n, o in pairs.items() if n == o and
                _signature(old, old_names[o]) != _signature(new, new.by_name[n])]
    matched_old = set(pairs.values())
    return Alignment(pairs, by_name, by_structure, changed,
                     [n.name for n in new.nodes if n.name not in pairs],
                     [n.name for n in old.nodes if n.name not in matched_old])


def _pair(old: float, new: float) -> dict:
    return {"old": old, "new": new, "ratio": new / old if old else (1.0 if new == old else None)}


def diff(old_path: str, new_path: str, hardware: list[str], batch: int | None = None,
         precision: str = "auto", fusion: str = "auto", shapes: dict | None = None,
         dims: dict | None = None) -> dict:
    """The diff as JSON-ready data (what `onnx-hwutil diff` prints as a table, Markdown or JSON)."""
    a = Analyzer(shapes, dims, scoped=True)
    prof = {w: a.profile(p, batch) for w, p in (("old", old_path), ("new", new_path))}
    al = align(prof["old"].graph, prof["new"].graph)
    t_old, t_new = prof["old"].totals, prof["new"].totals
    # `auto` may fuse each chip by its own runtime's rules: kernels are paired once per preset in use.
    presets = (list(dict.fromkeys(for_chip(fusion, a.spec(hw).kind) for hw in hardware))
               or [for_chip(fusion, None)])
    fused = {f: {w: a.fused(p, batch, "model", f) for w, p in (("old", old_path), ("new", new_path))}
             for f in presets}
    first = fused[presets[0]]
    totals = {k: _pair(getattr(t_old, k), getattr(t_new, k))
              for k in ("macs", "flops", "params", "weight_bytes", "peak_memory_bytes")}
    totals["nodes"] = _pair(len(prof["old"].costs.nodes), len(prof["new"].costs.nodes))
    totals["kernels"] = _pair(len(first["old"].kernels), len(first["new"].kernels))

    chips, sched = [], {}
    for hw in hardware:
        s_old = a.run(Point(old_path, hw, batch, precision, fusion))
        s_new = a.run(Point(new_path, hw, batch, precision, fusion))
        sched[hw] = (s_old, s_new)
        chips.append({"hardware": s_new.spec.name, "precision": s_new.precision, "batch": s_new.batch,
                      **{k: _pair(getattr(s_old, k), getattr(s_new, k))
                         for k in ("latency_s", "throughput_per_s", "compute_utilization",
                                   "memory_bandwidth_utilization", "dram_bytes")},
                      "energy_per_inference_j": _pair(s_old.energy["total_j"] / s_old.batch,
                                                      s_new.energy["total_j"] / s_new.batch)})

    return {"schema": SCHEMA, "old": old_path, "new": new_path,
            "settings": {"hardware": hardware, "batch": batch, "precision": precision, "fusion": fusion,
                         "presets": presets},
            "totals": totals, "chips": chips, "op_types": _op_types(prof),
            "nodes": {"matched_by_name": al.by_name, "matched_by_structure": al.by_structure,
                      "changed": [{"old": o, "new": n, "op_type": prof["new"].graph.by_name[n].op_type,
                                   "macs": _pair(_macs(prof["old"], o), _macs(prof["new"], n))}
                                  for o, n in al.changed],
                      "added": al.added, "removed": al.removed},
            "kernels": [r | {"fusion": f} for f in presets for r in _kernels(
                al, fused[f], {hw: v for hw, v in sched.items() if v[1].fusion == f})],
            "changed": bool(al.changed or al.added or al.removed or any(
                v["old"] != v["new"] for v in totals.values()) or any(
                c[k]["old"] != c[k]["new"] for c in chips for k in ("latency_s", "dram_bytes")))}


def _macs(p, node: str) -> int:
    return next(nc.cost.macs for nc in p.costs.nodes if nc.node.name == node)


def _op_types(prof: dict) -> list[dict]:
    rows: dict[str, dict] = {}
    for which, p in prof.items():
        for nc in p.costs.nodes:
            r = rows.setdefault(nc.node.op_type,
                                {k: Counter() for k in ("count", "macs", "flops", "dram_bytes")})
            r["count"][which] += 1
            r["macs"][which] += nc.cost.macs
            r["flops"][which] += nc.cost.flops
            r["dram_bytes"][which] += nc.cost.dram_bytes
    out = []
    for op, r in sorted(rows.items()):
        entry = {"op_type": op, **{k: _pair(c["old"], c["new"]) for k, c in r.items()}}
        if any(entry[k]["old"] != entry[k]["new"] for k in ("count", "macs", "flops", "dram_bytes")):
            out.append(entry)
    return out


def _kernels(al: Alignment, fused: dict, sched: dict) -> list[dict]:
    old_of = {m: s for s in fused["old"].kernels for m in s.nodes}
    used: set[int] = set()
    rows = []
    for s in fused["new"].kernels:
        votes = Counter(old_of[al.pairs[m]].id for m in s.nodes if m in al.pairs and al.pairs[m] in old_of)
        match = next((k for k, _ in votes.most_common() if k not in used), None)
        if match is not None:
            used.add(match)
        rows.append(_kernel_row(fused["old"].kernel(match) if match is not None else None, s, sched))
    rows += [_kernel_row(s, None, sched) for s in fused["old"].kernels if s.id not in used]
    return [r for r in rows if r["status"] != "same"]


def _kernel_row(old, new, sched: dict) -> dict:
    status = "added" if old is None else "removed" if new is None else "same"
    row = {"old_id": old.id if old else None, "new_id": new.id if new else None,
           "label": (new or old).label, "macs": _pair(old.macs if old else 0, new.macs if new else 0),
           "dram_bytes": _pair(old.dram_bytes if old else 0, new.dram_bytes if new else 0), "chips": {}}
    for s_old, s_new in sched.values():
        ko = s_old.kernel(old.id) if old else None
        kn = s_new.kernel(new.id) if new else None
        row["chips"][s_new.spec.name] = {
            "latency_s": _pair(ko.latency_s if ko else 0.0, kn.latency_s if kn else 0.0),
            "bound": {"old": ko.bound if ko else None, "new": kn.bound if kn else None},
            "units": {"old": ko.units if ko else None, "new": kn.units if kn else None}}
        if status == "same" and (ko.latency_s, ko.bound, ko.units) != (kn.latency_s, kn.bound, kn.units):
            status = "changed"
    if status == "same" and (row["macs"]["old"] != row["macs"]["new"]
                             or row["dram_bytes"]["old"] != row["dram_bytes"]["new"]):
        status = "changed"
    row["status"] = status
    return row
