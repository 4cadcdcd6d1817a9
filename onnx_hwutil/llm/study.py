"""What `onnx-hwutil llm` answers: per chip, batch and context a row per phase, time to first token and per
output token, what the storage what-ifs save, and how far tensor parallelism over several devices pays.

Tensor parallelism (Megatron-style: attention heads and MLP columns split over the devices) is modelled on
the single-device schedule: kernels with matrix work take 1/N of their compute and memory time, the rest
(norms, residual adds, embedding) run whole on every device, and each layer adds two all-reduces of the
hidden state at the spec's interconnect bandwidth and latency (ring: 2(N-1)/N of the message each way).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from onnx import TensorProto

from ..dtypes import check_precision, element_bits
from ..errors import HwUtilError
from ..hardware import load_spec
from ..hardware.rates import default_precision
from ..loader import load_model
from ..ops import OpKind
from .detect import Decoder, find_decoder
from .phases import KV_FORMATS, PHASES, WEIGHT_FORMATS, DecoderModel, Phase, PhaseRun

# The layout of `llm --format json` (onnx_hwutil/schemas/llm.schema.json); removing or renaming a field
# bumps it.
SCHEMA = "onnx-hwutil/llm/1"
ROW_KEYS = ("hardware", "precision", "weights", "kv", "devices", "phase", "batch", "context", "latency_s",
            "tokens_per_s", "kv_cache_bytes", "weight_bytes", "fits", "max_batch", "bound",
            "compute_utilization", "memory_bandwidth_utilization", "bandwidth_bound_tokens_per_s", "of_bound",
            "speedup_vs_model")
# More devices "stop paying" where doubling them cuts the decode step by less than this share.
WORTH_DOUBLING = 0.10
ALL_REDUCES_PER_LAYER = 2  # after attention's output projection and after the MLP's down projection


@dataclass(frozen=True)
class Query:
    hardware: tuple[str, ...]
    batches: tuple[int, ...] = (1,)
    contexts: tuple[int, ...] = (1024,)
    prompt: int | None = None
    generate: int | None = None
    weights: str = "model"
    kv: str = "model"
    precision: str = "auto"
    fusion: str = "aggressive"
    devices: int = 1
    kv_cache: dict = field(default_factory=dict)  # past input -> present output, when the user names them


def study(path: str, q: Query, shapes: dict | None = None, dims: dict | None = None) -> dict:
    """Every row, summary and note of `llm`, as one JSON-ready dict."""
    if q.weights not in WEIGHT_FORMATS:
        raise HwUtilError(f"--weights {q.weights!r}: choose {', '.join(WEIGHT_FORMATS)}")
    if q.kv not in KV_FORMATS:
        raise HwUtilError(f"--kv {q.kv!r}: choose {', '.join(KV_FORMATS)}")
    path = os.fspath(path)
    decoder = find_decoder(load_model(path), q.kv_cache or None)
    m = DecoderModel(path, decoder, shapes, dims)
    rows, summaries, scaling = [], [], []
    notes = [f"decoder: {decoder.describe()}"]
    for hw in q.hardware:
        spec = load_spec(hw)
        prec = _precision(q.precision, spec, m)
        if q.devices > 1 and not spec.interconnect:
            raise HwUtilError(f"--devices {q.devices}: {spec.name} has no interconnect in its spec, so a "
                              "split over devices cannot be priced")
        for batch in q.batches:
            for ctx in q.contexts:
                for name in PHASES:
                    run = m.run(Phase(name, batch, ctx), spec, prec, q.weights, q.kv, q.fusion)
                    base = None
                    if (q.weights, q.kv) != ("model", "model"):
                        base = m.run(Phase(name, batch, ctx), spec, prec, "model", "model", q.fusion)
                    rows.append(_row(run, q, base))
            if q.prompt:
                summaries.append(_summary(m, spec, prec, q, batch))
        if q.devices > 1:
            scaling.append(_scaling(m, spec, prec, q))
    notes += _notes(decoder, q, rows)
    return {"schema": SCHEMA, "model": path, "decoder": _decoder_dict(decoder), "rows": rows,
            "summary": summaries, "tensor_parallel": scaling, "notes": notes}


def _precision(asked: str, spec, m: DecoderModel) -> str:
    if asked == "auto":
        return default_precision(spec)
    if asked == "model":
        return m.profile(1, 1, 1, "model", "model", "model").model_precision
    return check_precision(asked)


def _hidden(run: PhaseRun) -> int:
    """The width of the residual stream: the reduction dim of the last matrix op (the LM head)."""
    last = [nc for nc in run.fused.profile.costs.nodes if nc.cost.kind == OpKind.MATRIX and nc.gemms]
    if not last:
        raise HwUtilError("no matrix op in the graph: cannot size the all-reduces of tensor parallelism")
    return last[-1].gemms[0].k


def tp_latency(run: PhaseRun, devices: int) -> float:
    """The phase's time with tensor parallelism over `devices` (see the module's docstring)."""
    if devices == 1:
        return run.schedule.latency_s
    t = 0.0
    for k in run.schedule.kernels:
        if k.id in run.split_kernels:
            t += max(k.compute_s / devices, k.memory_s / devices) + k.overhead_s
        else:
            t += k.latency_s
    link = run.spec.interconnect
    elem = element_bits(TensorProto.FLOAT, run.schedule.precision) / 8
    msg = run.phase.batch * run.phase.new * _hidden(run) * elem
    ring = 2 * (devices - 1) / devices * msg / link["bandwidth_bytes_per_s"] + \
        2 * (devices - 1) * link.get("latency_s", 0.0)
    return t + ALL_REDUCES_PER_LAYER * run.layers * ring


def _row(run: PhaseRun, q: Query, base: PhaseRun | None) -> dict:
    s, n, cap = run.schedule, q.devices, run.spec.dram_capacity
    latency = tp_latency(run, n)
    tokens = run.phase.batch * run.phase.new
    per_device = (run.weight_bytes + run.kv_cache_bytes) / n + run.activation_bytes
    per_seq = run.kv_cache_bytes / n / run.phase.batch + run.activation_bytes / run.phase.batch
    room = cap - run.weight_bytes / n
    bound_tps = None
    if run.phase.name == "decode":
        floor_s = (run.weight_read_bytes + run.kv_read_bytes) / (run.spec.dram_bandwidth * n)
        bound_tps = tokens / floor_s
        if tokens / latency > bound_tps * (1 + 1e-9):
            raise AssertionError(f"{run.spec.name}: decode predicted at {tokens / latency:.4g} tokens/s, "
                                 f"above the DRAM bound {bound_tps:.4g}: a bug in the mapping")
    time_by = {}
    for k in s.kernels:
        time_by[k.bound] = time_by.get(k.bound, 0.0) + k.latency_s
    base_latency = tp_latency(base, n) if base is not None else None
    return {
        "hardware": run.spec.name, "precision": s.precision, "weights": q.weights, "kv": q.kv, "devices": n,
        "phase": run.phase.name, "batch": run.phase.batch, "context": run.phase.context,
        "latency_s": latency, "tokens_per_s": tokens / latency,
        "kv_cache_bytes": run.kv_cache_bytes, "weight_bytes": run.weight_bytes,
        "fits": per_device <= cap, "max_batch": max(0, math.floor(room / per_seq)) if room > 0 else 0,
        "bound": max(time_by, key=time_by.get) if time_by else "none",
        "compute_utilization": s.compute_utilization, "memory_bandwidth_utilization":
            s.memory_bandwidth_utilization,
        "bandwidth_bound_tokens_per_s": bound_tps,
        "of_bound": tokens / latency / bound_tps if bound_tps else None,
        "speedup_vs_model": base_latency / latency if base_latency else None,
    }


def _summary(m: DecoderModel, spec, prec: str, q: Query, batch: int) -> dict:
    """Time to first token (prefill of the prompt), time per output token (decode at the middle of the
    generation: decode time grows linearly with the cache, so that is the mean step), end to end."""
    gen = q.generate or 1
    pre = m.run(Phase("prefill", batch, q.prompt), spec, prec, q.weights, q.kv, q.fusion)
    dec = m.run(Phase("decode", batch, q.prompt + gen // 2), spec, prec, q.weights, q.kv, q.fusion)
    ttft, tpot = tp_latency(pre, q.devices), tp_latency(dec, q.devices)
    e2e = ttft + (gen - 1) * tpot
    return {"hardware": spec.name, "precision": prec, "batch": batch, "prompt": q.prompt, "generate": gen,
            "ttft_s": ttft, "tpot_s": tpot, "e2e_s": e2e, "tokens_per_s": batch / tpot,
            "devices": q.devices}


def _scaling(m: DecoderModel, spec, prec: str, q: Query) -> dict:
    """Decode time at the first batch and context over 1, 2, 4 ... devices; where doubling stops paying."""
    run = m.run(Phase("decode", q.batches[0], q.contexts[0]), spec, prec, q.weights, q.kv, q.fusion)
    counts = [1]
    while counts[-1] * 2 <= max(q.devices, 2):
        counts.append(counts[-1] * 2)
    times = [tp_latency(run, n) for n in counts]
    stop = next((n for n, t, prev in zip(counts[1:], times[1:], times, strict=False)
                 if t > prev * (1 - WORTH_DOUBLING)), None)
    return {"hardware": spec.name, "batch": q.batches[0], "context": q.contexts[0],
            "points": [{"devices": n, "latency_s": t, "speedup": times[0] / t}
                       for n, t in zip(counts, times, strict=True)],
            "stops_paying_at": stop, "interconnect": (spec.interconnect or {}).get("name")}


def _decoder_dict(d: Decoder) -> dict:
    return {"layers": d.layers, "cache_tensors": len(d.caches), "appended_by": d.how, "past_dim": d.past_dim,
            "new_dims": list(d.new_dims), "total_dims": list(d.total_dims),
            "caches": [{"past": c.past, "present": c.present, "seq_axis": c.seq_axis} for c in d.caches[:4]]}


def _notes(d: Decoder, q: Query, rows: list[dict]) -> list[str]:
    out = [f"fusion preset {q.fusion!r}: LLM runtimes (TensorRT-LLM, vLLM, onnxruntime-genai) fuse attention"
           if q.fusion == "aggressive" else f"fusion preset {q.fusion!r}"]
    if d.how == "Concat":
        out.append("the graph appends to its cache with Concat (past + new -> present), so every decode step "
                   "reads the whole past and writes the whole present, as onnxruntime runs this file; a "
                   "runtime with an in-place or paged cache writes only the new token's K and V")
    if q.weights != "model":
        out.append(f"--weights {q.weights}: matrix weights stored at {q.weights} with their scales, "
                   "arithmetic at the row's precision (dequantized in the kernel; the dequantization's own "
                   "work is not counted)")
    if q.devices > 1:
        out.append(f"--devices {q.devices}: tensor parallel, matrix kernels split evenly, other kernels "
                   "whole on every device, two ring all-reduces of the hidden state per layer; memory per "
                   "device is weights and cache / N plus the whole activation working set")
    if any(r["of_bound"] is not None for r in rows):
        out.append("bandwidth_bound_tokens_per_s: batch x DRAM bandwidth / (the weight bytes a step reads, "
                   "each weight once, + the cache bytes), the most any runtime can do; of_bound: the "
                   "prediction's share of it")
    return out
