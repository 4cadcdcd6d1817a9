"""Tables of `onnx-hwutil llm`: a row per chip, batch, context and phase; the prompt/generate summary; the
tensor-parallel scaling."""

from __future__ import annotations

from tabulate import tabulate

from .units import ms, pct, si, size


def render(d: dict) -> str:
    parts = [_rows(d["rows"])]
    if d["summary"]:
        parts += ["", "Prompt and generation:", _summary(d["summary"])]
    for s in d["tensor_parallel"]:
        parts += ["", f"Tensor parallel on {s['hardware']} ({s['interconnect']}), decode at batch "
                      f"{s['batch']}, context {s['context']}:", _scaling(s)]
    parts += ["", "Notes:"] + [f"- {n}" for n in d["notes"]]
    return "\n".join(parts)


def _rows(rows: list[dict]) -> str:
    what_if = any(r["speedup_vs_model"] for r in rows)
    table = []
    for r in rows:
        row = [r["hardware"], r["precision"], r["phase"], r["batch"], r["context"], ms(r["latency_s"]),
               si(r["tokens_per_s"]), size(r["kv_cache_bytes"]), size(r["weight_bytes"]),
               "yes" if r["fits"] else "NO", r["max_batch"], r["bound"], pct(r["compute_utilization"]),
               pct(r["memory_bandwidth_utilization"]), pct(r["of_bound"]) if r["of_bound"] else "-"]
        if what_if:
            row.append(f"{r['speedup_vs_model']:.2f}x" if r["speedup_vs_model"] else "-")
        table.append(row)
    headers = ["hardware", "prec", "phase", "batch", "context", "latency", "tokens/s", "KV cache", "weights",
               "fits", "max batch", "bound", "compute", "DRAM BW", "of BW bound"]
    return tabulate(table, headers=headers + (["vs model"] if what_if else []), disable_numparse=True)


def _summary(rows: list[dict]) -> str:
    return tabulate([[r["hardware"], r["precision"], r["batch"], r["prompt"], r["generate"], ms(r["ttft_s"]),
                      ms(r["tpot_s"]), f"{r['e2e_s']:.3f} s", si(r["tokens_per_s"])] for r in rows],
                    headers=["hardware", "prec", "batch", "prompt", "generate", "first token", "per token",
                             "end to end", "tokens/s"], disable_numparse=True)


def _scaling(s: dict) -> str:
    stop = s["stops_paying_at"]
    table = tabulate([[p["devices"], ms(p["latency_s"]), f"{p['speedup']:.2f}x"] for p in s["points"]],
                     headers=["devices", "decode step", "speedup"], disable_numparse=True)
    if stop:
        return f"{table}\ndoubling to {stop} devices cuts the step by less than 10%: more stop paying there"
    return f"{table}\nevery doubling shown still cuts the step by 10% or more"
