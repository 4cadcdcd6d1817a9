"""Tables, what-if comparisons and graph exports for `onnx-hwutil fuse`."""

from __future__ import annotations

from tabulate import tabulate

from ..fusion import FusedGraph
from .units import si, size


def subgraph_table(f: FusedGraph, top: int | None = None) -> str:
    subs = f.kernels
    if top:
        subs = sorted(subs, key=lambda s: (-s.dram_bytes, s.id))[:top]
    rows = [(s.id, s.label[:40], len(s.nodes), si(s.macs), si(s.flops), size(s.dram_bytes),
             f"{s.arithmetic_intensity:.1f}", size(s.working_set_bytes), s.kind.label) for s in subs]
    return tabulate(rows, headers=["id", "label", "nodes", "MACs", "FLOPs", "DRAM bytes", "FLOP/B",
                                   "working set", "kind"], tablefmt="simple", disable_numparse=True)


def _pct(a: float, b: float) -> str:
    return f"{100 * (b - a) / a:+.1f}%" if a else "n/a"


def comparison_table(base: FusedGraph, other: FusedGraph) -> str:
    a, b = base.totals, other.totals
    rows = [
        ("kernels", a["kernels"], b["kernels"], _pct(a["kernels"], b["kernels"])),
        ("DRAM bytes", size(a["dram_bytes"]), size(b["dram_bytes"]), _pct(a["dram_bytes"], b["dram_bytes"])),
        ("arithmetic intensity (FLOP/B)", f"{a['arithmetic_intensity']:.2f}",
         f"{b['arithmetic_intensity']:.2f}", _pct(a["arithmetic_intensity"], b["arithmetic_intensity"])),
        ("FLOPs", si(a["flops"]), si(b["flops"]), _pct(a["flops"], b["flops"])),
    ]
    return tabulate(rows, headers=["", base.preset, other.preset, "change"], tablefmt="simple",
                    disable_numparse=True)


def render(f: FusedGraph, compare: FusedGraph | None, top: int | None) -> str:
    t = f.totals
    head = (f"{f.profile.bound.path}: preset {f.preset} (passes: {', '.join(f.passes) or 'none'}), "
            f"{t['kernels']} kernels, {size(t['dram_bytes'])} DRAM traffic, "
            f"{t['arithmetic_intensity']:.2f} FLOP/B")
    parts = [head, ""]
    if compare is not None:  # the answer to the question asked first, in the direction it was asked
        parts += [f"What-if: {f.preset} -> {compare.preset}", comparison_table(f, compare), ""]
    parts.append(subgraph_table(f, top))
    if t["folded_nodes"]:
        parts += ["", f"Folded away ({len(t['folded_nodes'])} nodes, {si(t['folded_flops'])} FLOPs): "
                  + ", ".join(t["folded_nodes"][:10])]
    notes = f.profile.gaps + list(f.profile.bound.shape_notes)
    if notes:
        parts += ["", "Notes:", *[f"- {n}" for n in notes]]
    return "\n".join(parts)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def to_dot(f: FusedGraph) -> str:
    lines = ["digraph fused {", "  rankdir=TB;", "  node [shape=box, fontname=Helvetica];"]
    for s in f.subgraphs:
        style = "" if s.is_kernel else ", style=dashed"
        text = f"{_quote(s.label)}\\n{size(s.dram_bytes)}, {s.arithmetic_intensity:.1f} FLOP/B"
        lines.append(f'  s{s.id} [label="{text}"{style}];')
    lines += [f"  s{u} -> s{v};" for u, v in sorted(f.dag().edges)]
    lines.append("}")
    return "\n".join(lines)


def to_mermaid(f: FusedGraph) -> str:
    lines = ["flowchart TD"]
    for s in f.subgraphs:
        label = s.label.replace('"', "'")
        lines.append(f'  s{s.id}["{label}<br/>{size(s.dram_bytes)}, {s.arithmetic_intensity:.1f} FLOP/B"]')
    lines += [f"  s{u} --> s{v}" for u, v in sorted(f.dag().edges)]
    return "\n".join(lines)
