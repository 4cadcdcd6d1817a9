"""`onnx-hwutil diff` as a table for a terminal or Markdown for a pull-request comment, from diff()'s data."""

from __future__ import annotations

from tabulate import tabulate

from .units import ms, pct, si, size

_TOTALS = (("macs", "MACs", si), ("flops", "FLOPs", si), ("params", "parameters", si),
           ("peak_memory_bytes", "peak memory", size), ("nodes", "ONNX nodes", str),
           ("kernels", "kernels", str))


def _change(p: dict) -> str:
    if p["old"] == p["new"]:
        return "="
    if not p["old"]:
        return "new"
    return f"{100 * (p['new'] - p['old']) / p['old']:+.1f}%"


def render(d: dict, markdown: bool = False, top: int = 20) -> str:
    fmt = "github" if markdown else "simple"
    head = "## " if markdown else ""
    if not d["changed"]:
        return f"{head}No change: {d['new']} counts, fuses and maps exactly as {d['old']}."
    out = [f"{head}{d['old']} -> {d['new']}", ""]
    t = d["totals"]
    out.append(tabulate([(label, f(t[k]["old"]), f(t[k]["new"]), _change(t[k])) for k, label, f in _TOTALS],
                        headers=["", "old", "new", "change"], tablefmt=fmt, disable_numparse=True))
    out += ["", tabulate([(c["hardware"], c["precision"], c["batch"], ms(c["latency_s"]["old"]),
                           ms(c["latency_s"]["new"]), _change(c["latency_s"]),
                           size(c["dram_bytes"]["new"]), _change(c["dram_bytes"]),
                           pct(c["compute_utilization"]["new"]),
                           f"{c['energy_per_inference_j']['new'] * 1e3:.3f} mJ",
                           _change(c["energy_per_inference_j"]))
                          for c in d["chips"]],
                         headers=["chip", "prec", "batch", "latency old", "latency new", "change", "DRAM new",
                                  "change", "compute util", "energy / inference", "change"],
                         tablefmt=fmt, disable_numparse=True)]
    n = d["nodes"]
    out += ["", f"Nodes: {n['matched_by_name']} matched by name, {n['matched_by_structure']} by structure, "
                f"{len(n['changed'])} changed shape, {len(n['added'])} added, {len(n['removed'])} removed."]
    if d["op_types"]:
        out += ["", tabulate([(r["op_type"], f"{r['count']['old']} -> {r['count']['new']}",
                               si(r["macs"]["new"]), _change(r["macs"]), size(r["dram_bytes"]["new"]),
                               _change(r["dram_bytes"]))
                              for r in d["op_types"]],
                             headers=["op type", "count", "MACs new", "change", "bytes new", "change"],
                             tablefmt=fmt, disable_numparse=True)]
    ks = d["kernels"]
    if ks:
        chip = d["chips"][0]["hardware"]
        def moved(k):
            t = k["chips"][chip]["latency_s"]
            return -abs(t["new"] - t["old"])

        ks = sorted(ks, key=moved)
        rows = []
        for k in ks[:top]:
            c = k["chips"][chip]
            bound = c["bound"]["old"] if c["bound"]["old"] == c["bound"]["new"] else \
                f"{c['bound']['old'] or '-'} -> {c['bound']['new'] or '-'}"
            rows.append((k["status"], k["label"][:32], si(k["macs"]["new"]), _change(k["macs"]),
                         f"{c['latency_s']['old'] * 1e6:.1f}", f"{c['latency_s']['new'] * 1e6:.1f}", bound,
                         f"{c['units']['old'] or '-'} -> {c['units']['new'] or '-'}"))
        more = f" (the {top} that moved most)" if len(ks) > top else ""
        out += ["", f"Kernels that changed on {chip}: {len(ks)}{more}",
                tabulate(rows, headers=["", "kernel", "MACs new", "change", "old us", "new us", "bound",
                                        "units"], tablefmt=fmt, disable_numparse=True)]
    return "\n".join(out)
