"""`onnx-hwutil report`: a study (see `study`) written as Markdown, self-contained HTML, JSON and plots.

The seed report's structure: summary, model characteristics, per-hardware tables, batch sweep, fusion,
findings and recommendations, energy, trust. Every number is read from the study's JSON; the HTML is the
Markdown converted by Python-Markdown, with the plots embedded as data URIs so the one file travels alone.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable

import markdown
from tabulate import tabulate

from ..errors import HwUtilError
from ..study import QUESTIONS, marked
from . import plots
from .analysis_view import bottleneck
from .units import ms, not_costed, pct, si, size

CSS = """body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem}
body{line-height:1.45}table{border-collapse:collapse;margin:0.8rem 0;font-size:0.9rem}
th,td{border:1px solid #ccc;padding:0.25rem 0.5rem}th{background:#f3f3f3}img{max-width:100%}
code{background:#f5f5f5;padding:0 0.2rem}"""




def _table(rows: list, headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _slug(*parts: str) -> str:
    return "_".join("".join(c if c.isalnum() or c in "-." else "-" for c in p) for p in parts)


def figures(study: dict) -> dict[str, object]:
    """Every plot of the report, by file stem, drawn from the study alone."""
    out: dict[str, object] = {}
    for r in study["results"]:
        out[_slug("roofline", r["model"], r["hardware"])] = plots.roofline(r)
    out["utilization"] = plots.utilization_bars(study["results"])
    if study["sweep"]:
        out["batch_sweep"] = plots.batch_curves(study["sweep"])
    for m in study["models"]:
        out[_slug("fusion", m["name"])] = plots.fusion_bars([r for r in study["fusion"]
                                                             if r["model"] == m["name"]])
    return out


def _summary(study: dict) -> list[str]:
    ms = study["models"]
    lines = []
    for m in ms:
        c = m["characteristics"]
        lines.append(f"- **{m['name']}**: {si(c['macs'])} MACs ({si(c['flops'])} FLOPs), {si(c['params'])} "
                     f"parameters, {c['arithmetic_intensity']:.1f} FLOP per DRAM byte after "
                     f"{c.get('fusion', study['settings']['fusion'])} fusion, {c['kernels']} kernels.")
    if len(ms) == 2 and all(m["characteristics"]["flops"] and m["characteristics"]["arithmetic_intensity"]
                            for m in ms):
        a, b = (m["characteristics"] for m in ms)
        lines.append(f"- {ms[1]['name']} has {b['flops'] / a['flops']:.2f}x the FLOPs of {ms[0]['name']} "
                     f"and {b['arithmetic_intensity'] / a['arithmetic_intensity']:.2f}x its arithmetic "
                     "intensity.")
    for adv in study["advice"]:
        lines.append(f"- {adv['model']} at batch {adv['batch']}: lowest latency on "
                     f"{marked(adv, 'lowest_latency')}, highest throughput on "
                     f"{marked(adv, 'highest_throughput')}, least energy per inference on "
                     f"{marked(adv, 'least_energy')}.")
    said: dict[tuple, list[str]] = {}  # the same advice for several chips is said once, naming them all
    for r in study["results"]:
        for f in r["findings"]:
            if f["rule"] == "low_utilization":
                said.setdefault((r["model"], f["mitigation"]), []).append(
                    f"{r['hardware']} ({pct(r['compute_utilization'])} at batch {r['batch']})")
    for (model, mitigation), where in said.items():
        lines.append(f"- {model}: compute utilization on {', '.join(where)}; {mitigation}.")
    n = sum(len(r["findings"]) for r in study["results"])
    lines.append(f"- {n} findings, each with its evidence and a mitigation: see "
                 "[Findings and recommendations](#findings-and-recommendations).")
    return lines


def _characteristics(study: dict) -> str:
    keys = ("macs", "flops", "params", "peak_memory_bytes", "arithmetic_intensity", "kernels", "nodes")
    rows = []
    for m in study["models"]:
        c = m["characteristics"]
        rows.append([m["name"], si(c["macs"]), si(c["flops"]), si(c["params"]), size(c["peak_memory_bytes"]),
                     f"{c['arithmetic_intensity']:.2f}", c["kernels"], c["nodes"], m["batch"]])
    if len(study["models"]) == 2:
        a, b = (m["characteristics"] for m in study["models"])
        rows.append(["ratio", *(f"{b[k] / a[k]:.2f}x" if a[k] else "n/a" for k in keys), ""])
    return _table(rows, ["model", "MACs", "FLOPs", "params", "peak memory", "FLOP/byte (fused, file dtypes)",
                         "kernels (fused)", "ONNX nodes", "batch"])


def _hardware(study: dict) -> str:
    rows = []
    for h in study["hardware"]:
        r = next(r for r in study["results"] if r["hardware"] == h["name"])
        rows.append([f"{h['title']} ({h['name']})", h["kind"], f"{h['units']} {h['unit_name']}s",
                     h["precision"],
                     si(r["peak_ops_per_s"], "OP/s"), si(h["dram_bandwidth_bytes_per_s"], "B/s"),
                     f"{r['ridge_point']:.1f}", size(h["onchip_bytes"]),
                     f"{h['numbers'] - h['numbers_assumed']} cited, {h['numbers_assumed']} assumed"])
    return _table(rows, ["chip", "kind", "units", "precision", "peak", "DRAM bandwidth", "ridge FLOP/B",
                         "on-chip memory", "spec numbers"])


def _per_chip(study: dict, image: Callable[[str, str], str]) -> list[str]:
    out = []
    names = [m["name"] for m in study["models"]]
    for h in study["hardware"]:
        rs = [next(r for r in study["results"] if r["hardware"] == h["name"] and r["model"] == n)
              for n in names]
        batches = "/".join(dict.fromkeys(str(r["batch"]) for r in rs))
        out += ["", f"### {h['title']} ({h['name']}, {rs[0]['precision']}, batch {batches})", ""]
        out += [f"- **Bottleneck**, {r['model']}: {bottleneck(r)}" for r in rs if r.get("subgraphs")] + [""]

        def row(label, fn, rs=rs):
            return [label, *(fn(r) for r in rs)]

        table = [
            row("Compute utilization", lambda r: pct(r["compute_utilization"])),
            row("Memory bandwidth utilization", lambda r: pct(r["memory_bandwidth_utilization"])),
            row("Attained", lambda r: si(r["attained_ops_per_s"], "OP/s")),
            row("Peak at this precision", lambda r: si(r["peak_ops_per_s"], "OP/s")),
            row("Arithmetic intensity as mapped (ridge point)",
                lambda r: (f"{r['arithmetic_intensity']:.1f}" if r["arithmetic_intensity"] is not None else
                           "n/a (no DRAM traffic)") + f" ({r['ridge_point']:.1f}) FLOP/B"),
            row("Latency", lambda r: ms(r["latency_s"])),
            row("Throughput", lambda r: f"{r['throughput_per_s']:,.0f} /s"),
            row(f"{h['unit_name']}s allocated (time-weighted mean, max)",
                lambda r: "{mean:.1f}, {max} of {total}".format(**r["units_allocated"])),
            row("Kernels", lambda r: str(r["kernels"])),
            row("Time compute / memory / overhead-bound",
                lambda r: " / ".join(pct(r["bound_share"][k]) for k in ("compute", "memory", "overhead"))),
            row("Energy per inference", lambda r: f"{r['energy_per_inference_j'] * 1e3:.3f} mJ"),
            row("Not costed (nodes; MACs at least)", lambda r: not_costed(r["coverage"])),
        ]
        out.append(_table(table, ["metric", *names]))
        for r in rs:
            stem = _slug("roofline", r["model"], r["hardware"])
            out += ["", image(stem, f"Roofline of {r['model']} on {r['hardware']}")]
    return out


def _sweep(study: dict, image: Callable[[str, str], str]) -> list[str]:
    if not study["sweep"]:
        return ["", "No batch sweep: no model here lets its batch vary (see Notes)."]
    out = ["", image("batch_sweep", "Latency, throughput and utilization against batch"), ""]
    chips = [h["name"] for h in study["hardware"]]
    for m in study["models"]:
        rows = [r for r in study["sweep"] if r["model"] == m["name"]]
        if not rows:
            continue
        at = {(r["hardware"], r["batch"]): r for r in rows}
        table = [[b, *(f"{at[(c, b)]['throughput_per_s']:,.0f}/s, {pct(at[(c, b)]['compute_utilization'])}"
                       if at.get((c, b), {}).get("ok") else "failed" for c in chips)]
                 for b in study["settings"]["sweep_batches"]]
        out += [f"**{m['name']}**: throughput and compute utilization per batch", "",
                _table(table, ["batch", *chips]), ""]
    return out


def _fusion(study: dict, image: Callable[[str, str], str]) -> list[str]:
    out = []
    for m in study["models"]:
        rows = [[r["hardware"], r["fusion"], r["kernels"], size(r["dram_bytes"]), ms(r["latency_s"]),
                 pct(r["bound_share"]["memory"])] for r in study["fusion"] if r["model"] == m["name"]]
        out += ["", f"**{m['name']}**", "",
                _table(rows, ["chip", "fusion", "kernels", "DRAM traffic", "latency", "time memory-bound"]),
                "", image(_slug("fusion", m["name"]), f"Fusion presets compared for {m['name']}")]
    return out


def _findings(study: dict) -> list[str]:
    rows = [[r["model"], r["hardware"], f["rule"], f["finding"], f["mitigation"]]
            for r in study["results"] for f in r["findings"]]
    if not rows:
        return ["", "No rule fired: every chip is well used at this batch."]
    return ["", "Each row is a rule applied to the results above; its evidence (every number it used) is in "
                "`report.json` under `results[].findings`.", "",
            _table(rows, ["model", "chip", "rule", "finding", "mitigation"])]


def _tradeoffs(study: dict) -> list[str]:
    out = []
    for m in study["models"]:
        rs = sorted((r for r in study["results"] if r["model"] == m["name"]),
                    key=lambda r: -r["throughput_per_s"])
        out.append(f"- **{m['name']}** (batch {m['batch']}): " + "; ".join(
            f"{r['hardware']} {r['throughput_per_s']:,.0f}/s at {ms(r['latency_s'])} "
            f"({r['energy_per_inference_j'] * 1e3:.3f} mJ/inference)" for r in rs))
    return out


def _energy(study: dict) -> str:
    rows = []
    for r in study["results"]:
        e, b = r["energy_breakdown_j"], r["batch"]
        per = r["energy_per_inference_j"]
        rows.append([r["model"], r["hardware"], r["precision"], f"{per * 1e3:.3f}",
                     f"{e['compute_j'] * 1e3 / b:.3f}", f"{e['dram_j'] * 1e3 / b:.3f}",
                     f"{e['static_j'] * 1e3 / b:.3f}",
                     f"{1 / per:,.0f}" if per else "n/a"])
    return _table(rows, ["model", "chip", "precision", "mJ / inference", "compute mJ", "DRAM mJ",
                         "static mJ", "inferences / J"])


def _counts_trust(study: dict) -> list[str]:
    gaps = [f"{m['name']}: {n}" for m in study["models"] for n in m["gaps"]]
    if not gaps:
        return ["- MACs, FLOPs, parameters and bytes are exact counts under the conventions of DESIGN.md: "
                "every op of these models has a cost formula and a shape."]
    return ["- MACs, FLOPs, parameters and bytes are exact counts **except** where an op has no formula or "
            "no shape; those are left out of every number above:", *[f"  - {g}" for g in gaps]]


def _llm(study: dict) -> list[str]:
    """A decoder's prefill and decode per chip, batch and context (the rows of `onnx-hwutil llm`)."""
    out = []
    for d in study.get("llm", []):
        out += ["", f"### {d['model']}", "",
                _table([[r["hardware"], r["precision"], r["phase"], r["batch"], r["context"],
                         ms(r["latency_s"]), si(r["tokens_per_s"]), size(r["kv_cache_bytes"]),
                         "yes" if r["fits"] else "no", r["max_batch"], r["bound"],
                         pct(r["of_bound"]) if r["of_bound"] is not None else "-"] for r in d["rows"]],
                       ["chip", "precision", "phase", "batch", "context", "latency", "tokens/s", "KV cache",
                        "fits", "max batch", "bound", "of DRAM bound"]),
                "", *[f"- {n}" for n in d["notes"]]]
    return out


def render_markdown(study: dict, image: Callable[[str, str], str]) -> str:
    names = [m["name"] for m in study["models"]]
    s = study["settings"]
    out = [f"# Hardware utilization: {' vs '.join(names)}", "",
           f"{study['generator']}; precision {s['precision']}, fusion {s['fusion']}; every number below is "
           "in `report.json`.", "", "## Summary", "", *_summary(study),
           "", "## Model characteristics", "", _characteristics(study),
           "", "## Hardware", "", _hardware(study),
           "", "## Results per chip", *_per_chip(study, image),
           "", "## Utilization across chips", "", image("utilization", "Utilization and units allocated"),
           "", "## Batch sweep", *_sweep(study, image),
           "", "## Fusion before and after", *_fusion(study, image),
           "", "## Findings and recommendations", *_findings(study),
           "", "## Best chip per question", "",
           _table([[a["model"], a["batch"], *(marked(a, q) for q, _, _ in QUESTIONS)]
                   for a in study["advice"]],
                  ["model", "batch", "lowest latency", "highest throughput", "least energy / inference"]),
           "", "## Throughput vs latency", "", *_tradeoffs(study),
           "", "## Energy", "", _energy(study),
           "", "## How far to trust these numbers", "",
           *[f"- **{h['name']}** ({h['numbers_assumed']} of {h['numbers']} spec numbers assumed): "
             f"{h['validation']}." for h in study["hardware"]],
           *_counts_trust(study)]
    if study.get("llm"):
        out += ["", "## LLM phases: prefill and decode", "",
                "Time to first token is the prefill of the prompt; each output token is a decode step "
                "reading every weight and the whole KV cache.", *_llm(study)]
    if study["notes"]:
        out += ["", "## Notes", "", *[f"- {n}" for n in study["notes"]]]
    return "\n".join(out) + "\n"


def render_html(md: str, title: str) -> str:
    body = markdown.markdown(md, extensions=["tables", "toc"])
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
            f"<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def write(study: dict, directory: str) -> list[str]:
    """report.json, report.md (plots beside it as PNG and SVG) and report.html (plots inside it)."""
    written = []
    pngs: dict[str, bytes] = {}
    for stem, fig in figures(study).items():
        paths = plots.save(fig, directory, stem)
        written += paths
        with open(paths[0], "rb") as f:
            pngs[stem] = f.read()

    def file_link(stem: str, alt: str) -> str:
        return f"![{alt}]({stem}.png)"

    def data_uri(stem: str, alt: str) -> str:
        return f"![{alt}](data:image/png;base64,{base64.b64encode(pngs[stem]).decode()})"

    title = "Hardware utilization: " + " vs ".join(m["name"] for m in study["models"])
    files = {"report.json": json.dumps(study, indent=1, allow_nan=False),
             "report.md": render_markdown(study, file_link),
             "report.html": render_html(render_markdown(study, data_uri), title)}
    for name, text in files.items():
        path = os.path.join(directory, name)
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise HwUtilError(f"{path}: cannot write: {e.strerror}") from None
        written.append(path)
    return written
