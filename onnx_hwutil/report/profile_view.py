"""Tables and CSV for `onnx-hwutil profile`."""

from __future__ import annotations

import csv
import io

from tabulate import tabulate

from ..profile import Profile
from .units import si, size


def totals_table(p: Profile) -> str:
    t = p.totals
    rows = [
        ("MACs", f"{t.macs:,}", si(t.macs)),
        ("FLOPs", f"{t.flops:,}", si(t.flops)),
        ("Parameters", f"{t.params:,}", si(t.params)),
        ("Weight bytes", f"{t.weight_bytes:,}", size(t.weight_bytes)),
        ("Activation bytes", f"{t.activation_bytes:,}", size(t.activation_bytes)),
        ("DRAM bytes (unfused)", f"{t.dram_bytes:,}", size(t.dram_bytes)),
        ("Arithmetic intensity", f"{t.arithmetic_intensity:.2f}", "FLOPs/byte"),
        ("Peak memory", f"{t.peak_memory_bytes:,}", size(t.peak_memory_bytes)),
        ("Nodes", f"{len(p.costs.nodes):,}", ""),
    ]
    return tabulate(rows, headers=["", "value", ""], tablefmt="simple", colalign=("left", "right", "left"),
                    disable_numparse=True)


def op_type_table(p: Profile) -> str:
    rows = []
    total_flops = p.totals.flops or 1
    for r in p.by_op_type():
        flag = "" if r["status"] == "ok" else "  << " + r["status"].upper()
        op = r["op_type"] if r["domain"] == "ai.onnx" else f"{r['domain']}::{r['op_type']}"
        rows.append((op + flag, r["count"], si(r["macs"]), si(r["flops"]),
                     f"{100 * r['flops'] / total_flops:.1f}%", size(r["dram_bytes"])))
    return tabulate(rows, headers=["op type", "count", "MACs", "FLOPs", "% FLOPs", "DRAM bytes"],
                    tablefmt="simple")


def top_nodes_table(p: Profile, k: int) -> str:
    ranked = sorted(p.costs.nodes, key=lambda nc: (-nc.cost.flops, -nc.cost.dram_bytes, nc.node.name))[:k]
    rows = []
    for nc in ranked:
        c = nc.cost
        ai = c.flops / c.dram_bytes if c.dram_bytes else 0.0
        out = nc.node.outputs[0] if nc.node.outputs else ""
        shape = p.graph.tensor(out).shape if out else None
        rows.append((nc.node.name[:48], nc.node.op_type, _dims(shape),
                     si(c.macs), si(c.flops), size(c.dram_bytes), f"{ai:.1f}", c.kind.label))
    return tabulate(rows, headers=["node", "op", "output", "MACs", "FLOPs", "DRAM bytes", "FLOP/B", "kind"],
                    tablefmt="simple")


def render(p: Profile, top: int) -> str:
    inputs = ", ".join(f"{k}={'x'.join(map(str, v)) or 'scalar'}" for k, v in p.bound.inputs.items())
    parts = [f"{p.bound.path}  (opset {p.bound.opsets.get('', '?')}, precision {p.precision}, {inputs})", "",
             totals_table(p), "", op_type_table(p)]
    if top > 0:
        parts += ["", f"Top {top} nodes by FLOPs", top_nodes_table(p, top)]
    for n in p.gaps:
        parts += ["", n]
    rest = list(p.bound.shape_notes) + p.costs.notes
    if rest:
        parts += ["", "Notes:"] + [f"- {n}" for n in rest]
    return "\n".join(parts)


def to_csv(p: Profile) -> str:
    buf = io.StringIO()
    fields = ["name", "op_type", "domain", "macs", "flops", "bytes_read", "bytes_written", "weight_bytes",
              "kind", "status"]
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in p.to_dict()["nodes"]:
        w.writerow(row)
    return buf.getvalue()


def _dims(shape) -> str:
    """1x3x224x224; an unknown dim is '?', an unknown shape '-', a scalar 'scalar'."""
    if shape is None:
        return "-"
    return "x".join("?" if d is None else str(d) for d in shape) or "scalar"
