"""Findings: the observations the seed report draws by eye, computed, each with its evidence and a mitigation.

The rules are a table (`RULE_TABLE`): each has an id, the thresholds it compares with (named below, each
with its reason), the condition that fires it on one analyzed point (model x chip x batch x precision x
fusion), and a function that writes its finding, evidence and mitigation. Where the mitigation is a what-if,
the rule analyzes that what-if (`analysis.WhatIf`, with the same Analyzer's caches) instead of guessing: the
batch that reaches a utilization is found by search over batch, the DRAM bytes a fusion preset saves by
fusing with it, the precision that passes the ridge point by mapping at that precision.

A finding is `{"rule", "hardware", "finding", "evidence", "mitigation"}`; evidence holds the numbers (SI
units, fractions for shares), so gates and scripts can act on them without parsing the sentence.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .analysis import MAX_BATCH, Analyzer, Point, WhatIf
from .dtypes import PRECISIONS
from .forked import map_forked
from .fusion import PRESETS, what_ifs
from .hardware.mapping import Schedule
from .units import ms, pct, si, size

TARGET_UTILIZATION = 0.5  # the seed report's "saturate": half the chip's peak at this precision
MEMORY_BOUND_SHARE = 0.3  # time share memory-bound above which fusion and precision are worth a look
OVERHEAD_SHARE = 0.25  # time share in per-kernel overhead above which fewer kernels are worth a look
IDLE_SHARE = 0.25  # units idle on average, as a share of the chip, from which sharing it is worth a look
# Compute-bound time on non-matrix work from which the vector rate, not the matrix peak, is named as the
# limit: from half on, most of the compute time runs on the slower units.
VECTOR_SHARE = 0.5
# A what-if is offered as faster only under 99% of the point's time: precisions of the same peak (fp16 and
# bf16) differ by rounding, and a gain under 1% is far inside the model's error (docs/validation.md).
FASTER = 0.99

Explained = tuple[str, dict, str]  # (finding, evidence, mitigation)


@dataclass(frozen=True)
class Rule:
    id: str
    thresholds: dict[str, float]  # the named constants above that it compares with
    fires: Callable[[WhatIf], bool]  # on the analyzed point itself: no what-if
    explain: Callable[[WhatIf], Explained]  # runs the what-ifs its mitigation needs


@dataclass(frozen=True)
class Finding:
    rule: str
    hardware: str
    finding: str
    evidence: dict
    mitigation: str

    def to_dict(self) -> dict:
        return {"rule": self.rule, "hardware": self.hardware, "finding": self.finding,
                "evidence": self.evidence, "mitigation": self.mitigation}


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _peak(w: WhatIf) -> int:
    return w.totals(w.p.batch).peak_memory_bytes


def _narrower_weights(w: WhatIf) -> str:
    """What a narrower type would do for weights that do not fit, or why none can."""
    s = w.s
    bits = PRECISIONS[s.precision] or 32
    narrower = [q for q in s.spec.precisions if (PRECISIONS[q] or 32) < bits]
    if not narrower:
        return f"{s.precision} is the narrowest type this chip runs"
    q = narrower[-1]
    weights = w.totals(w.p.batch, q).weight_bytes
    still = "" if weights <= s.spec.dram_capacity else ", still too much"
    return f"at {q} the weights take {size(weights)}{still}"


def _exceeds_memory(w: WhatIf) -> Explained:
    s = w.s
    cap = s.spec.dram_capacity
    t = w.totals(w.p.batch)
    peak, weights = t.peak_memory_bytes, t.weight_bytes
    text = (f"needs {size(peak)} at its peak ({size(weights)} of weights at {s.precision}), more than "
            f"{s.spec.name}'s {size(cap)} of memory: it does not fit, whatever the latency says")
    ev = {"peak_memory_bytes": peak, "weight_bytes": weights, "memory_capacity_bytes": cap}
    if weights > cap:
        return text, ev, (f"the weights alone do not fit ({_narrower_weights(w)}): split the model over "
                          "several chips or choose a chip with more memory")
    fits = w.halved_batch_that_fits(cap)
    ev["largest_power_of_two_batch_that_fits"] = fits
    if fits is None:
        smaller = "no smaller batch fits either" if s.batch > 1 else "batch 1 is the smallest"
        return text, ev, (f"{smaller} ({_narrower_weights(w)}): a chip with more memory, or the activations "
                          "split over several chips")
    return text, ev, f"batch {fits} fits ({size(w.totals(fits).peak_memory_bytes)} at its peak)"


def _low_utilization(w: WhatIf) -> Explained:
    s = w.s
    u = s.compute_utilization
    text = (f"{pct(u)} of {s.spec.name}'s {s.precision} peak at batch {s.batch} "
            f"(target {pct(TARGET_UTILIZATION)})")
    ev = {"batch": s.batch, "compute_utilization": u, "target": TARGET_UTILIZATION}
    r = w.search_batch(TARGET_UTILIZATION)
    ev |= {"batch_reaching_target": r.batch, "search": r.method, "searched_up_to": r.tried,
           "search_stopped": r.stopped}
    if r.batch is not None:
        t = r.at
        ev |= {"utilization_at_that_batch": t.compute_utilization, "latency_s_at_that_batch": t.latency_s,
               "throughput_at_that_batch": t.throughput_per_s}
        # a batch skipped as impossible, or bisection, leaves the order uncertain: "a" batch, not "the first"
        which = "is the first to reach" if r.first and r.stopped is None else "reaches"
        return text, ev, (f"batch {r.batch} {which} {pct(TARGET_UTILIZATION)} ({pct(t.compute_utilization)}, "
                          f"{ms(t.latency_s)} per batch, {t.throughput_per_s:,.0f}/s; searched {r.method})")
    if r.tried == s.batch:  # no larger batch could be analyzed
        if r.no_batch:
            return text, ev | {"batch_fixed": True}, (
                "the model has no batch dim (its inputs have none to set): more work per call must come from "
                "the model itself")
        why = f"no larger batch could be analyzed ({r.stopped})" if r.stopped else (
            f"the batch is already at the search limit ({MAX_BATCH})")
        return text, ev, why
    best = r.best
    shares = best.bound_share
    limit = max(shares, key=shares.get)
    vector = best.vector_share_of_compute_bound
    ev |= {"best_batch": best.batch, "best_utilization": best.compute_utilization,
           "bound_share_at_best": shares, "vector_share_of_compute_bound_at_best": vector}
    verdict = (f"larger batches cannot run (the search stopped {r.stopped})" if r.stopped else
               "batch alone will not fill this chip")
    why = ""
    if limit == "compute" and vector >= VECTOR_SHARE:
        # Compute-bound far below the peak: the matrix units wait while other work runs on slower units.
        why = (f" ({pct(vector)} of that on non-matrix work, which runs at the vector rate of "
               f"{si(best.rates.vector_ops_per_s, 'OP/s')}, not the matrix peak of "
               f"{si(best.rates.peak_ops_per_s, 'OP/s')})")
    return text, ev, (f"no batch from {s.batch} to {r.tried} reaches {pct(TARGET_UTILIZATION)}: the best is "
                      f"{pct(best.compute_utilization)} at batch {best.batch}, where {pct(shares[limit])} of "
                      f"the time is {limit}-bound{why}; {verdict}")


def _memory_bound(w: WhatIf) -> Explained:
    s = w.s
    share = s.bound_share["memory"]
    text = f"{pct(share)} of the time is memory-bound ({size(s.dram_bytes)} of DRAM traffic)"
    ev = {"memory_bound_share": share, "dram_bytes": s.dram_bytes, "fusion": s.fusion}
    order = what_ifs(s.fusion)
    stronger = order[order.index(s.fusion) + 1:] if s.fusion in order else []
    options = {}
    for preset in stronger:
        t = w.at(fusion=preset)
        extra = [x for x in PRESETS[preset] if x not in PRESETS.get(s.fusion, [])]
        options[preset] = {"dram_bytes": t.dram_bytes, "saved_bytes": s.dram_bytes - t.dram_bytes,
                           "latency_s": t.latency_s, "kernels": len(t.kernels), "passes_added": extra}
    ev["fusion_options"] = options
    best = max(options.items(), key=lambda kv: kv[1]["saved_bytes"], default=None)
    if best and best[1]["saved_bytes"] > 0:
        name, o = best
        mitigation = (f"fusion preset {name} (adds {', '.join(o['passes_added'])}) saves "
                      f"{size(o['saved_bytes'])} ({pct(o['saved_bytes'] / s.dram_bytes)}) of DRAM "
                      f"traffic: latency {ms(s.latency_s)} -> {ms(o['latency_s'])}")
    else:
        mitigation = ("no stronger fusion preset saves DRAM traffic here; a narrower precision moves "
                      "fewer bytes (see below_ridge), a chip with more bandwidth moves them faster")
    return text, ev, mitigation


def _below_ridge(w: WhatIf) -> Explained:
    s = w.s
    text = (f"arithmetic intensity {s.arithmetic_intensity:.1f} FLOP/B is below {s.spec.name}'s ridge "
            f"point {s.ridge_point:.1f} FLOP/B at {s.precision}: the roofline caps it at "
            f"{pct(s.arithmetic_intensity / s.ridge_point)} of peak")
    per = {}
    for prec in s.spec.precisions:
        t = w.try_at(precision=prec)
        if t is not None:
            per[prec] = {"arithmetic_intensity": t.arithmetic_intensity if t.dram_bytes else None,
                         "ridge_point": t.ridge_point, "latency_s": t.latency_s,
                         "peak_ops_per_s": t.rates.peak_ops_per_s}
    ev = {"precision": s.precision, "arithmetic_intensity": s.arithmetic_intensity,
          "ridge_point": s.ridge_point, "by_precision": per}
    # A mitigation must be faster: widening the type "passes" the ridge only by lowering the peak.
    faster = {p: v for p, v in per.items() if v["latency_s"] < FASTER * s.latency_s}
    past = [(p, v) for p, v in faster.items()
            if v["arithmetic_intensity"] is None or v["arithmetic_intensity"] >= v["ridge_point"]]
    if past:
        p, v = min(past, key=lambda pv: pv[1]["latency_s"])
        mitigation = (f"at {p} the model passes the ridge ({v['arithmetic_intensity']:.1f} >= "
                      f"{v['ridge_point']:.1f} FLOP/B), latency {ms(s.latency_s)} -> {ms(v['latency_s'])}")
    elif faster:
        p = min(faster, key=lambda q: faster[q]["latency_s"])
        v = faster[p]
        if v["peak_ops_per_s"] > s.rates.peak_ops_per_s:
            why = (f"its peak is {v['peak_ops_per_s'] / s.rates.peak_ops_per_s:.3g}x {s.precision}'s, so "
                   "the ridge rises with the intensity")
        else:  # the same (or a lower) peak: fewer bytes per op is all the narrower type buys
            why = (f"its peak is no higher than {s.precision}'s ({si(v['peak_ops_per_s'], 'OP/s')}); it "
                   "only moves fewer bytes")
        mitigation = (f"{p} is faster ({ms(s.latency_s)} -> {ms(v['latency_s'])}) but stays below its "
                      f"ridge ({v['arithmetic_intensity']:.1f} < {v['ridge_point']:.1f} FLOP/B): {why}; "
                      "raise intensity with batch or fusion")
    else:
        mitigation = (f"no precision this chip runs is faster than {s.precision} here; raise "
                      "intensity with batch or fusion")
    return text, ev, mitigation


def _idle(s: Schedule) -> float:
    u = s.units_allocated
    return u["total"] - u["mean"]


def _idle_units(w: WhatIf) -> Explained:
    s = w.s
    u = s.units_allocated
    idle = _idle(s)
    small = sum(k.latency_s for k in s.kernels if k.units < u["total"] / 2) / (s.latency_s or 1)
    text = (f"on average {idle:.1f} of {u['total']} {u['name']}s are idle; kernels using under half of "
            f"them take {pct(small)} of the time")
    ev = {"units_total": u["total"], "units_mean": u["mean"], "units_idle_mean": idle,
          "time_share_under_half": small}
    need = max(1, math.ceil(u["mean"]))
    # Only a partition the vendor defines (MIG profiles in the spec), the smallest that holds the
    # average number of busy units and the model's memory.
    peak = _peak(w)
    fit = next(((n, units) for n, (units, mem) in s.spec.partitions.items()
                if units >= need and mem >= peak and units < u["total"]), None)
    if fit:
        ev["partition"] = {"name": fit[0], "units": fit[1]}
    if s.spec.kind == "gpu":
        part = (f"give this model a {fit[0]} partition ({_n(fit[1], u['name'])}), or " if fit else "")
        mitigation = (f"run other work on the idle {u['name']}s (concurrent streams or instances), "
                      f"{part}a larger batch, which gives each kernel more tiles")
    elif s.spec.kind == "cpu" and u["total"] // need >= 2:
        mitigation = (f"run {u['total'] // need} instances side by side with {need} threads each, or a "
                      "larger batch")
    else:
        mitigation = (f"a larger batch gives each kernel more parallel work, or several models can share "
                      f"the chip; this model keeps about {_n(need, u['name'])} busy")
    return text, ev, mitigation


def _overhead_share(s: Schedule) -> float:
    return sum(k.overhead_s for k in s.kernels) / s.latency_s


def _overhead_bound(w: WhatIf) -> Explained:
    s = w.s
    overhead = sum(k.overhead_s for k in s.kernels)
    share = overhead / s.latency_s
    # the backend's own per-kernel cost (a calibrated CPU measures its dispatch), not the spec's figure
    each = overhead / len(s.kernels)
    text = (f"{pct(share)} of the time is per-kernel overhead ({_n(len(s.kernels), 'kernel')} x "
            f"{each * 1e6:.3g} us)")
    ev = {"overhead_share": share, "kernels": len(s.kernels), "kernel_overhead_s": each}
    mitigation = "a larger batch amortizes each launch over more work"
    if s.fusion in PRESETS and s.fusion != "aggressive":
        t = w.at(fusion="aggressive")
        if len(t.kernels) < len(s.kernels):
            ev["kernels_aggressive"] = len(t.kernels)
            mitigation = (f"fusion preset aggressive launches {len(t.kernels)} kernels instead of "
                          f"{len(s.kernels)} (latency {ms(s.latency_s)} -> {ms(t.latency_s)}); " + mitigation)
    return text, ev, mitigation


def _spills(w: WhatIf) -> Explained:
    s = w.s
    spill = s.capacity["spill_bytes"]
    n = sum(1 for k in s.kernels if k.spill_bytes)
    text = (f"{n} fused kernels outgrow {s.spec.name}'s {size(s.spec.onchip_bytes)} on-chip memory and "
            f"spill {size(spill)} of intermediates through DRAM")
    ev = {"spill_bytes": spill, "kernels_spilling": n, "onchip_bytes": s.spec.onchip_bytes}
    # What would keep them on chip, and only if it is faster per inference: less fusion, a smaller batch.
    order = what_ifs(s.fusion)
    options = {}
    weaker = order[:order.index(s.fusion)] if s.fusion in order else []
    for preset in weaker:
        options[f"fusion {preset}"] = w.at(fusion=preset)
    if s.batch > 1 and (t := w.try_at(batch=s.batch // 2)) is not None:
        options[f"batch {s.batch // 2}"] = t
    per_inference = {k: t.latency_s / t.batch for k, t in options.items()}
    ev["alternatives"] = {k: {"latency_s_per_inference": v, "spill_bytes": options[k].capacity["spill_bytes"]}
                          for k, v in per_inference.items()}
    own = s.latency_s / s.batch
    faster = {k: v for k, v in per_inference.items() if v < FASTER * own}
    if faster:
        k = min(faster, key=faster.get)
        mitigation = (f"{k} spills {size(options[k].capacity['spill_bytes'])} and is faster per "
                      f"inference ({ms(own)} -> {ms(faster[k])})")
    elif per_inference:
        tried = ", ".join(f"{k} is {ms(v)} per inference" for k, v in per_inference.items())
        mitigation = f"the spill costs less than the alternatives: {tried}, against {ms(own)}"
    else:
        mitigation = "no smaller batch or weaker fusion preset to try; a chip with more on-chip memory"
    return text, ev, mitigation


# In the order findings are listed.
RULE_TABLE: tuple[Rule, ...] = (
    Rule("exceeds_memory", {}, lambda w: _peak(w) > w.s.spec.dram_capacity, _exceeds_memory),
    Rule("low_utilization", {"TARGET_UTILIZATION": TARGET_UTILIZATION, "VECTOR_SHARE": VECTOR_SHARE},
         lambda w: w.s.compute_utilization < TARGET_UTILIZATION, _low_utilization),
    Rule("memory_bound", {"MEMORY_BOUND_SHARE": MEMORY_BOUND_SHARE},
         lambda w: w.s.bound_share["memory"] >= MEMORY_BOUND_SHARE, _memory_bound),
    Rule("below_ridge", {"FASTER": FASTER},
         lambda w: bool(w.s.dram_bytes) and w.s.arithmetic_intensity < w.s.ridge_point, _below_ridge),
    Rule("idle_units", {"IDLE_SHARE": IDLE_SHARE},
         lambda w: _idle(w.s) / w.s.units_allocated["total"] >= IDLE_SHARE, _idle_units),
    Rule("overhead_bound", {"OVERHEAD_SHARE": OVERHEAD_SHARE},
         lambda w: _overhead_share(w.s) >= OVERHEAD_SHARE, _overhead_bound),
    Rule("spills", {"FASTER": FASTER}, lambda w: bool(w.s.capacity["spill_bytes"]), _spills),
)
RULES = tuple(r.id for r in RULE_TABLE)  # what gates name (finding_<id>)


def finding(rule: Rule, w: WhatIf) -> Finding | None:
    """One rule on one analyzed point: its finding, or None where it does not fire."""
    return Finding(rule.id, w.s.spec.name, *rule.explain(w)) if rule.fires(w) else None


def findings(a: Analyzer, p: Point, s: Schedule) -> list[Finding]:
    """Every rule's finding for point `p`, whose schedule `s` the Analyzer `a` produced."""
    w = _what_if(a, p, s)
    return [f for rule in RULE_TABLE if w and (f := finding(rule, w)) is not None]


def _what_if(a: Analyzer, p: Point, s: Schedule) -> WhatIf | None:
    """The point's what-ifs, or None where nothing computes: no utilization to explain."""
    return WhatIf(a, p, s) if s.kernels and s.flops and s.latency_s else None


def findings_of(a: Analyzer, points: list[tuple[Point, Schedule]],
                jobs: int | None = None) -> list[list[dict]]:
    """Every point's findings (as dicts, in RULE_TABLE's order), the rules that fire worked out at once in
    forked workers (forked.py), batch searches first: they take longest. The batches a search binds first
    (rescale.py) are bound before the workers fork, so that no two of them infer the same shapes."""
    whatifs = [_what_if(a, p, s) for p, s in points]
    work = [(i, rule) for rule in RULE_TABLE for i, w in enumerate(whatifs) if w and rule.fires(w)]
    work.sort(key=lambda ir: ir[1].id != "low_utilization")  # stable: the rest keep their order
    if any(rule.id == "low_utilization" for _, rule in work) and len(work) > 1:
        for model in dict.fromkeys(p.model for p, _ in points):
            a.affine_in_batch(model)
    done = map_forked(lambda ir: finding(ir[1], whatifs[ir[0]]).to_dict(), work, jobs)
    by_point: list[list[tuple[int, dict]]] = [[] for _ in points]
    for (i, rule), d in zip(work, done, strict=True):
        by_point[i].append((RULE_TABLE.index(rule), d))
    return [[d for _, d in sorted(found, key=lambda x: x[0])] for found in by_point]
