"""A study: everything `onnx-hwutil report` says about one or two models on a set of chips, as one JSON
document. The Markdown, the HTML and the plots are all drawn from this document and nothing else.

It holds the seed report's parts, computed: model characteristics, per-chip results at one batch (with
every kernel, for the rooflines), a batch sweep, the same point under each fusion preset, findings, the best
chip per question, energy, and how far each chip's numbers can be trusted.
"""

from __future__ import annotations

import os

from . import __version__
from .analysis import Analyzer, Point
from .errors import HwUtilError
from .findings import findings
from .fusion import CHOICES, resolve_passes, what_ifs
from .sweep import run_points

SCHEMA = "onnx-hwutil/report/1"
SWEEP_BATCHES = [1, 2, 4, 8, 16, 32, 64]
LLM_CONTEXT = 1024  # a decoder's report: the cached tokens of its decode step
# What each kind of backend has been checked against (docs/validation.md holds the measurements).
VALIDATION = {
    "cpu": "calibrate this machine's spec (onnx-hwutil calibrate) and check it with onnx-hwutil validate; "
           "bundled CPU specs are uncalibrated peaks (docs/validation.md, section 6)",
    "gpu": "not calibrated: against measured PyTorch fp16 latencies on an H100, predictions were 0.29x to "
           "3.5x the measurement, median absolute error 60% (docs/validation.md, section 5); treat GPU "
           "latencies as a roofline estimate",
    "tpu": "MXU cycles agree with the SCALE-Sim systolic-array simulator (docs/validation.md, section 3); "
           "memory system and overheads are not validated",
    "kpu": "no silicon to compare with: every number is the spec's stated assumption",
}


PARTS = frozenset({"kernels", "findings", "presets", "llm"})  # what `build` may leave out
QUESTIONS = (("lowest_latency", "latency_s", min), ("highest_throughput", "throughput_per_s", max),
             ("least_energy", "energy_per_inference_j", min))


def best_chips(entries: list[dict], specs: dict | None = None, cited_only: bool = False) -> dict:
    """The seed report's "best architecture" question, over analyze entries of one model and batch, with
    what each answer rests on (`basis`): "cited" numbers; an "assumed design" (a chip with no silicon, every
    number assumed); or a latency margin smaller than the difference in the chips' assumed per-kernel launch
    cost, which then decides it. `cited_only` leaves assumed designs out of the ranking."""
    specs = specs or {}

    def designed(r):
        s = specs.get(r["hardware"])
        return s is not None and all(c.assumed for c in s.sources.values())

    pool = [r for r in entries if not (cited_only and designed(r))] or entries
    out: dict = {"basis": {}}
    for q, key, pick in QUESTIONS:
        ranked = sorted(pool, key=lambda r, key=key: r[key], reverse=pick is max)
        win = ranked[0]
        out[q] = win["hardware"]
        basis = "cited"
        if designed(win):
            basis = "assumed design"
        elif len(ranked) > 1 and q != "least_energy":
            basis = _overhead_basis(win, ranked[1], specs) or basis
        out["basis"][q] = basis
    return out


def _overhead_basis(win: dict, second: dict, specs: dict) -> str | None:
    """A latency win smaller than the gap in assumed per-kernel overhead is decided by that assumption."""
    costs = []
    for r in (win, second):
        s = specs.get(r["hardware"])
        if s is None or not s.sources.get("kernel_overhead_s") or not s.sources["kernel_overhead_s"].assumed:
            return None
        costs.append(r["kernels"] * s.kernel_overhead_s)
    margin = abs(second["latency_s"] - win["latency_s"])
    return "within the assumed per-kernel launch cost" if margin < abs(costs[0] - costs[1]) else None


def marked(advice: dict, question: str) -> str:
    """A best-chip answer as a table cell: the chip, and what it rests on unless cited."""
    basis = advice.get("basis", {}).get(question, "cited")
    return advice[question] if basis == "cited" else f"{advice[question]} ({basis})"


def model_names(models: list[str]) -> list[str]:
    names = [os.path.splitext(os.path.basename(m))[0] for m in models]
    return names if len(set(names)) == len(names) else [f"{n} ({i + 1})" for i, n in enumerate(names)]


def _hardware(a: Analyzer, hw: str, precision: str) -> dict:
    s = a.spec(hw)
    assumed = sum(c.assumed for c in s.sources.values())
    return {"name": s.name, "title": s.title, "kind": s.kind, "units": s.units, "unit_name": s.unit_name,
            "precision": precision, "dram_bandwidth_bytes_per_s": s.dram_bandwidth,
            "onchip_bytes": s.onchip_bytes, "tdp_w": s.tdp_w, "numbers": len(s.sources),
            "numbers_assumed": assumed, "validation": VALIDATION[s.kind], "spec": s.path}


def _decoder_step(a: Analyzer, model: str, name: str, hardware: list[str], shapes: dict | None,
                  dims: dict | None, out: dict, notes: set[str], with_llm: bool = True) -> Analyzer:
    """A decoder with a KV cache whose phase dims the user left unbound: the report's tables become one
    decode step after LLM_CONTEXT cached tokens (what a served LLM runs most), and its LLM section gets both
    phases from `llm`. Anything else keeps the shared analyzer."""
    from .llm import Query, find_decoder, study
    from .loader import load_model

    try:
        d = find_decoder(load_model(model))
    except HwUtilError:
        return a
    step = d.dims(1, LLM_CONTEXT, 1)
    step.pop(d.batch_dim, None)  # the batch stays the report's
    if set(step) & set(dims or {}):
        return a
    notes.add(f"{name}: a decoder with a KV cache: its tables are one decode step (1 new token after "
              f"{LLM_CONTEXT} cached)" + ("; the LLM section has both phases" if with_llm else
                                         "; onnx-hwutil llm has both phases"))
    if with_llm:
        out["llm"].append({"model": name} | study(model, Query(tuple(hardware), (1, 8), (LLM_CONTEXT, 8192)),
                                                  shapes, dims))
    return Analyzer(shapes, {**(dims or {}), **step}, scoped=True)


def build(models: list[str], hardware: list[str], batch: int | None = None,
          sweep_batches: list[int] | None = None, precision: str = "auto", fusion: str = "auto",
          shapes: dict | None = None, dims: dict | None = None, cited_only: bool = False,
          parts: frozenset[str] = PARTS, advice_batches: list[int] | None = None) -> dict:
    """The study document. `parts` leaves out what a caller does not show (`compare` shows no per-kernel
    rows, findings, fusion presets or LLM section); advice is given at the tables' batch and at
    `advice_batches` (default: the largest sweep batch), where the model's batch is free."""
    if not 1 <= len(models) <= 2:
        raise HwUtilError("report: give one or two models")
    resolve_passes(fusion)  # an unknown preset is an input error before any work
    a = Analyzer(shapes, dims, scoped=True)
    names = model_names(models)
    sweep_batches = sorted(set(sweep_batches or SWEEP_BATCHES))
    hardware = list(dict.fromkeys(hardware))
    out: dict = {"schema": SCHEMA, "generator": f"onnx-hwutil {__version__}",
                 "settings": {"hardware": hardware, "batch": batch, "sweep_batches": sweep_batches,
                              "precision": precision, "fusion": fusion, "presets": CHOICES},
                 "models": [], "hardware": [], "results": [], "sweep": [], "fusion": [], "advice": [],
                 "llm": [], "notes": []}
    notes: set[str] = set()
    given: dict[str, str] = {}
    for hw in hardware:  # results are keyed by chip name: two specs of one name would overwrite each other
        n = a.spec(hw).name
        if n in given:
            raise HwUtilError(f"--hw {given[n]} and {hw} are both named {n!r}: rename one (its 'name' field)")
        given[n] = hw
    for name, m in zip(names, models, strict=True):
        am = _decoder_step(a, m, name, hardware, shapes, dims, out, notes, "llm" in parts)
        [b] = am.batches(m, [batch] if batch else None)
        here = []
        for hw in hardware:
            p = Point(m, hw, b, precision, fusion)
            s = am.run(p)
            notes.update(s.notes)
            here.append(s)
            found = findings(am, p, s) if "findings" in parts else []
            out["results"].append({"model": name} | s.to_dict(per_subgraph="kernels" in parts)
                                  | {"findings": [f.to_dict() for f in found]})
            for preset in what_ifs(s.fusion) if "presets" in parts else ():
                t = am.run(Point(m, hw, b, precision, preset))
                out["fusion"].append({"model": name} | t.to_dict(False))
        rows = run_points([Point(m, hw, sb, precision, fusion) for hw in hardware for sb in sweep_batches],
                          am)
        # The file fixes the batch (or --dim/--shape bound it): at most its own batch analyzes.
        failed = [r for r in rows if not r["ok"]]
        fixed = bool(failed) and len({r["batch"] for r in rows if r["ok"]}) <= 1
        if fixed:
            notes.add(f"{name}: no batch sweep: {failed[0]['error']}")
        else:
            out["sweep"] += [r | {"model": name} for r in rows]
            notes.update(f"{name}: {r['hardware']} batch {r['batch']}: {r['error']}"
                         for r in rows if not r["ok"])
        out["models"].append({"name": name, "path": m, "batch": here[0].batch, "batch_fixed": fixed,
                              "characteristics": am.characteristics(m, b, fusion),
                              "gaps": am.profile(m, b).gaps})
        own = here[0].batch
        more = [max(sweep_batches)] if advice_batches is None else advice_batches
        for bb in [own] + [x for x in more if not fixed and x != own]:
            runs = ([s.to_dict(False) for s in here] if bb == own else
                    [r for r in out["sweep"] if r["model"] == name and r["ok"] and r["batch"] == bb])
            if runs:
                specs = {a.spec(hw).name: a.spec(hw) for hw in hardware}
                out["advice"].append({"model": name, "batch": bb} | best_chips(runs, specs, cited_only))
    for hw, r in zip(hardware, out["results"], strict=False):
        out["hardware"].append(_hardware(a, hw, r["precision"]))
    out["notes"] = sorted(notes)
    return out
