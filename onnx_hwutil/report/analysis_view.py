"""Tables for `onnx-hwutil analyze` and `compare`: the seed report's questions, answered with our numbers."""

from __future__ import annotations

from collections import Counter

from tabulate import tabulate

from ..hardware.mapping import Schedule
from .units import not_costed, pct, si, size


def _units(s: Schedule | dict) -> str:
    u = s["units_allocated"] if isinstance(s, dict) else s.units_allocated
    return f"{u['mean']:.1f} avg, {u['max']} max / {u['total']} {u['name']}s"


def analyze_table(schedules: list[Schedule]) -> str:
    rows = []
    for s in schedules:
        b = s.bound_share
        prec = f"{s.precision} (uncalibrated)" if s.uncalibrated else s.precision
        rows.append((s.spec.name, prec, s.batch, f"{s.latency_s * 1e3:.3f}",
                     f"{s.throughput_per_s:,.0f}",
                     pct(s.compute_utilization), pct(s.memory_bandwidth_utilization),
                     si(s.attained_ops_per_s, "OP/s"), _units(s),
                     f"{s.energy['total_j'] * 1e3 / s.batch:.3f}",
                     f"{s.energy['total_j'] * 1e3:.3f}",
                     f"{pct(b['compute'])}/{pct(b['memory'])}/{pct(b['overhead'])}", not_costed(s.coverage)))
    return tabulate(rows, headers=["hardware", "prec", "batch", "latency ms", "throughput /s", "compute util",
                                   "mem BW util", "attained", "units allocated", "mJ / inference",
                                   "mJ / batch",
                                   "time compute/memory/overhead-bound", "not costed"], tablefmt="simple",
                    disable_numparse=True)


def subgraph_table(s: Schedule, top: int = 15) -> str:
    ks = sorted(s.kernels, key=lambda k: -k.latency_s)[:top]
    rows = [(k.id, k.label[:36], f"{k.units}/{s.spec.units}", f"{k.compute_s * 1e6:.1f}",
             f"{k.memory_s * 1e6:.1f}", f"{k.overhead_s * 1e6:.1f}", f"{k.latency_s * 1e6:.1f}", k.bound,
             size(k.dram_bytes), f"{k.energy_j * 1e3:.3f}") for k in ks]
    return tabulate(rows, headers=["id", "kernel", s.spec.unit_name + "s", "compute us", "memory us",
                                   "overhead us", "latency us", "bound", "DRAM", "mJ / batch"],
                    tablefmt="simple", disable_numparse=True)


def kernel_classes(entry: dict) -> list[dict]:
    """An analyze entry's kernels (its `subgraphs`) grouped by label (Conv+Relu, MatMul+Add...): count,
    total time, share of the model's time, what bounds most of it, units (time-weighted)."""
    groups: dict[str, dict] = {}
    for k in entry["subgraphs"]:
        g = groups.setdefault(k["label"], {"label": k["label"], "count": 0, "latency_s": 0.0,
                                           "bound": Counter(), "units": 0.0})
        g["count"] += 1
        g["latency_s"] += k["latency_s"]
        g["bound"][k["bound"]] += k["latency_s"]
        g["units"] += k["units"] * k["latency_s"]
    total = entry["latency_s"] or 1.0
    out = []
    for g in groups.values():
        g["share"] = g["latency_s"] / total
        g["units"] = g["units"] / g["latency_s"] if g["latency_s"] else 0.0
        g["bound"] = max(g["bound"], key=g["bound"].get)
        out.append(g)
    return sorted(out, key=lambda g: -g["latency_s"])


def class_table(entry: dict, top: int = 15, fmt: str = "simple") -> str:
    u = entry["units_allocated"]
    rows = [(g["label"][:36], g["count"], f"{g['latency_s'] * 1e6:.1f}", pct(g["share"]), g["bound"],
             f"{g['units']:.0f}/{u['total']}") for g in kernel_classes(entry)[:top]]
    return tabulate(rows, headers=["kernel class", "count", "total us", "share of time", "mostly bound by",
                                   f"{u['name']}s (mean)"], tablefmt=fmt, disable_numparse=True)


def bottleneck(entry: dict) -> str:
    """One line: where an analyze entry's time goes, and the change its findings measured to help most."""
    top = kernel_classes(entry)[:2]
    where = " and ".join(f"{g['label']} x{g['count']} {pct(g['share'])} ({g['bound']}-bound)" for g in top)
    best = _best_change(entry, entry.get("findings") or [])
    return f"{entry['hardware']} {entry['precision']} batch {entry['batch']}: time goes to {where}" + (
        f"; the findings' best single change: {best}" if best else "")


def _best_change(s: dict, found: list[dict]) -> str | None:
    """Among the what-ifs the findings analyzed, the largest gain per inference (fusion, precision, batch)."""
    per = s["latency_s"] / s["batch"]
    options: list[tuple[float, str]] = []
    for f in found:
        ev = f["evidence"]
        for preset, o in (ev.get("fusion_options") or {}).items():
            options.append((s["latency_s"] / o["latency_s"], f"fusion preset {preset}"))
        for prec, o in (ev.get("by_precision") or {}).items():
            if prec != s["precision"]:
                options.append((s["latency_s"] / o["latency_s"], f"precision {prec}"))
        if ev.get("batch_reaching_target") and ev.get("latency_s_at_that_batch"):
            b = ev["batch_reaching_target"]
            options.append((per / (ev["latency_s_at_that_batch"] / b), f"batch {b}"))
    gain, what = max(options, default=(1.0, ""))
    return f"{what}, {gain:.2f}x the throughput" if gain > 1.01 else None


def sweep_table(rows: list[dict], names: dict[str, str]) -> str:
    """sweep's rows for a person: model names, units, three significant digits, why a point failed."""
    def cell(r, k, fmt):
        return fmt(r[k]) if r[k] not in ("", None) else ""

    out = [(names.get(r["model"], r["model"]), r["hardware"], r["batch"], r["precision"], r["fusion"],
            cell(r, "latency_s", lambda v: f"{v * 1e3:.3g}"), cell(r, "throughput_per_s", si),
            cell(r, "compute_utilization", pct), cell(r, "memory_bandwidth_utilization", pct),
            cell(r, "attained_ops_per_s", lambda v: si(v, "OP/s")),
            cell(r, "energy_per_inference_j", lambda v: f"{v * 1e3:.3g}"), r["error"] or "")
           for r in rows]
    return tabulate(out, headers=["model", "chip", "batch", "prec", "fusion", "latency ms", "per s",
                                  "compute util", "mem BW util", "attained", "mJ / inference", "error"],
                    tablefmt="simple", disable_numparse=True)


def findings_list(rows: list[dict]) -> list[str]:
    return [f"- {r['finding']}\n  -> {r['mitigation']}" for r in rows]


def _change(a: float, b: float, ratio: bool = False) -> str:
    if ratio:
        return f"{b / a:.2f}x" if a else "n/a"
    return f"{100 * (b - a):+.1f} pts"


def comparison(study: dict, names: list[str], advice: list[tuple], notes: list[str]) -> str:
    """Two models of a study (study.build) side by side: characteristics, then per chip at the tables'
    batch."""
    a, b = names
    chars = [m["characteristics"] for m in study["models"]]
    ca, cb = chars
    out = [f"# {a} vs {b}", "", "## Model characteristics", ""]
    rows = [(n, si(c["macs"]), si(c["flops"]), si(c["params"]), size(c["peak_memory_bytes"]),
             f"{c['arithmetic_intensity']:.2f}", c["kernels"], c["nodes"])
            for n, c in zip(names, chars, strict=True)]
    rows.append(("ratio", *(f"{cb[k] / ca[k]:.2f}x" if ca[k] else "n/a" for k in (
        "macs", "flops", "params", "peak_memory_bytes", "arithmetic_intensity", "kernels", "nodes"))))
    out.append(tabulate(rows, headers=["model", "MACs", "FLOPs", "params", "peak memory",
                                       "FLOP/byte (fused)", "kernels (fused)", "ONNX nodes"],
                        tablefmt="github", disable_numparse=True))
    n_hw = len(study["hardware"])
    per_model = [study["results"][i * n_hw:(i + 1) * n_hw] for i in range(2)]
    by_hw = {hw["name"]: (hw, ra, rb) for hw, ra, rb in zip(study["hardware"], *per_model, strict=True)}
    for name, (hw, sa, sb) in by_hw.items():
        out += ["", f"## {hw['title']} ({name}, {sa['precision']}, batch {sa['batch']})", ""]
        rows = [
            ("Compute util", pct(sa["compute_utilization"]), pct(sb["compute_utilization"]),
             _change(sa["compute_utilization"], sb["compute_utilization"])),
            ("Mem BW util", pct(sa["memory_bandwidth_utilization"]), pct(sb["memory_bandwidth_utilization"]),
             _change(sa["memory_bandwidth_utilization"], sb["memory_bandwidth_utilization"])),
            ("Attained", si(sa["attained_ops_per_s"], "OP/s"), si(sb["attained_ops_per_s"], "OP/s"),
             _change(sa["attained_ops_per_s"], sb["attained_ops_per_s"], True)),
            ("Peak at this precision", si(sa["peak_ops_per_s"], "OP/s"), si(sb["peak_ops_per_s"], "OP/s"),
             ""),
            ("Latency", f"{sa['latency_s'] * 1e3:.3f} ms", f"{sb['latency_s'] * 1e3:.3f} ms",
             _change(sa["latency_s"], sb["latency_s"], True)),
            ("Throughput", f"{sa['throughput_per_s']:,.0f} /s", f"{sb['throughput_per_s']:,.0f} /s",
             _change(sa["throughput_per_s"], sb["throughput_per_s"], True)),
            (f"{hw['unit_name']}s allocated", _units(sa), _units(sb), ""),
            ("Energy / inference", f"{sa['energy_per_inference_j'] * 1e3:.2f} mJ",
             f"{sb['energy_per_inference_j'] * 1e3:.2f} mJ",
             _change(sa["energy_per_batch_j"], sb["energy_per_batch_j"], True)),
            ("Time compute/memory/overhead-bound",
             "/".join(pct(sa["bound_share"][k]) for k in ("compute", "memory", "overhead")),
             "/".join(pct(sb["bound_share"][k]) for k in ("compute", "memory", "overhead")), ""),
        ]
        out.append(tabulate(rows, headers=["metric", a, b, "change"], tablefmt="github",
                            disable_numparse=True))
    out += ["", "## Best hardware (computed over the chips above)", ""]
    out.append(tabulate(advice, headers=["model", "batch", "lowest latency", "highest throughput",
                                         "least energy / inference"], tablefmt="github",
                        disable_numparse=True))
    out += ["", "## Throughput vs latency", ""]
    for n, results in zip(names, per_model, strict=True):
        ranked = sorted(results, key=lambda r: -r["throughput_per_s"])
        out.append(f"- {n}: " + "; ".join(
            f"{r['hardware']} {r['throughput_per_s']:,.0f}/s @ {r['latency_s'] * 1e3:.3f} ms "
            f"({r['energy_per_inference_j'] * 1e3:.2f} mJ)" for r in ranked))
    if notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(out)
