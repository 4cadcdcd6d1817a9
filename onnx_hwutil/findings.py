"""Findings: the observations the seed report draws by eye, computed, each with its evidence and a mitigation.

Every rule looks at one analyzed point (model x chip x batch x precision x fusion) and, where the mitigation
is a what-if, analyzes that what-if with the same Analyzer (its caches make that cheap) instead of guessing:
the batch that reaches a utilization is found by search over batch, the DRAM bytes a fusion preset saves by
fusing with it, the precision that passes the ridge point by mapping at that precision.

A finding is `{"rule", "hardware", "finding", "evidence", "mitigation"}`; evidence holds the numbers (SI
units, fractions for shares), so gates and scripts can act on them without parsing the sentence.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace

from .analysis import Analyzer, Point
from .dtypes import PRECISIONS
from .errors import HwUtilError, NoBatchDim
from .fusion import PRESETS
from .hardware.mapping import Schedule
from .report.units import ms, pct, si, size

TARGET_UTILIZATION = 0.5  # the seed report's "saturate": half the chip's peak at this precision
MAX_BATCH = 1024  # the batch search stops here
EXHAUSTIVE = 64  # at most this many batches checked one by one between two powers of two
MEMORY_BOUND_SHARE = 0.3  # time share memory-bound above which fusion and precision are worth a look
OVERHEAD_SHARE = 0.25
IDLE_SHARE = 0.25  # units idle on average, as a share of the chip
RULES = ("exceeds_memory", "low_utilization", "memory_bound", "below_ridge", "idle_units", "overhead_bound",
         "spills")


@dataclass
class _Search:
    best: Schedule  # the highest utilization seen
    tried: int  # the largest batch analyzed
    batch: int | None = None  # the first batch found at the target, and its schedule
    at: Schedule | None = None
    method: str = "powers of two"
    stopped: str | None = None  # why a batch could not be analyzed, if one could not
    no_batch: bool = False  # the model has no batch dim at all


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



class _Rules:
    def __init__(self, a: Analyzer, p: Point, s: Schedule):
        self.a, self.s = a, s
        # What-ifs keep everything but the one thing they change; the precision stays the one mapped.
        self.p = replace(p, precision=s.precision)
        self.hw = s.spec.name

    def at(self, **change) -> Schedule:
        return self.a.run(replace(self.p, **change))

    def finding(self, rule: str, text: str, evidence: dict, mitigation: str) -> Finding:
        return Finding(rule, self.hw, text, evidence, mitigation)

    def search_batch(self, target: float) -> _Search:
        """Search upward from the point's batch for the first batch whose compute utilization reaches
        `target`: powers of two until one does, then every batch between it and the previous power (at most
        EXHAUSTIVE of them; beyond that, bisection). Utilization is not monotonic in batch (wave quantization,
        capacity cliffs), so the batches between smaller powers are not all checked; the evidence says so.
        A batch that cannot run (a size fixed in the file, or more memory than the chip has) is skipped
        between powers and ends the doubling."""
        s = self.s
        r = _Search(best=s, tried=s.batch)
        lo, b = s.batch, s.batch
        while b < MAX_BATCH:
            b = min(2 * b, MAX_BATCH)
            t = self._try(r, b)
            if t is None:
                return r
            if t.compute_utilization >= target:
                r.batch, r.at = b, t
                break
            lo = b
        if r.batch is None:
            return r
        hi = r.batch
        if hi - lo <= EXHAUSTIVE:
            r.method = f"powers of two up to {lo}, then every batch from {lo + 1}"
            for mid in range(lo + 1, hi):
                t = self._try(r, mid)
                if t is not None and t.compute_utilization >= target:
                    r.batch, r.at = mid, t
                    break
            return r
        r.method = f"powers of two up to {lo}, then bisection up to {hi}"
        while hi - lo > 1:
            mid = (lo + hi) // 2
            t = self._try(r, mid)
            if t is None:
                break
            if t.compute_utilization >= target:
                hi, r.batch, r.at = mid, mid, t
            else:
                lo = mid
        return r

    def _try(self, r: _Search, batch: int) -> Schedule | None:
        try:
            peak = self.peak_memory(batch)[0]
            if peak > self.s.spec.dram_capacity:
                r.stopped = (f"at batch {batch}: it needs {size(peak)}, more than the chip's "
                             f"{size(self.s.spec.dram_capacity)}")
                return None
            t = self.at(batch=batch)
        except HwUtilError as e:  # a batch the model cannot take (a fixed reshape, a --shape binding)
            r.stopped = f"at batch {batch}: {e}"
            r.no_batch = isinstance(e, NoBatchDim)
            return None
        r.tried = max(r.tried, batch)
        r.best = max(r.best, t, key=lambda x: x.compute_utilization)
        return t

    def peak_memory(self, batch: int | None) -> tuple[int, int]:
        t = self.a.profile(self.p.model, batch, self.s.precision).totals
        return t.peak_memory_bytes, t.weight_bytes

    def narrower_weights(self) -> str:
        """What a narrower type would do for weights that do not fit, or why none can."""
        s = self.s
        bits = PRECISIONS[s.precision] or 32
        narrower = [q for q in s.spec.precisions if (PRECISIONS[q] or 32) < bits]
        if not narrower:
            return f"{s.precision} is the narrowest type this chip runs"
        q = narrower[-1]
        w = self.a.profile(self.p.model, self.p.batch, q).totals.weight_bytes
        still = "" if w <= s.spec.dram_capacity else ", still too much"
        return f"at {q} the weights take {size(w)}{still}"

    def exceeds_memory(self) -> Finding | None:
        s = self.s
        cap = s.spec.dram_capacity
        peak, weights = self.peak_memory(self.p.batch)
        if peak <= cap:
            return None
        text = (f"needs {size(peak)} at its peak ({size(weights)} of weights at {s.precision}), more than "
                f"{s.spec.name}'s {size(cap)} of memory: it does not fit, whatever the latency says")
        ev = {"peak_memory_bytes": peak, "weight_bytes": weights, "memory_capacity_bytes": cap}
        if weights > cap:
            return self.finding("exceeds_memory", text, ev,
                                f"the weights alone do not fit ({self.narrower_weights()}): split the model "
                                "over several chips or choose a chip with more memory")
        fits, b = None, s.batch
        while b > 1 and fits is None:
            b //= 2
            try:
                if self.peak_memory(b)[0] <= cap:
                    fits = b
            except HwUtilError:
                break
        ev["largest_power_of_two_batch_that_fits"] = fits
        if fits is None:
            smaller = "no smaller batch fits either" if s.batch > 1 else "batch 1 is the smallest"
            return self.finding("exceeds_memory", text, ev,
                                f"{smaller} ({self.narrower_weights()}): a chip with more memory, or the "
                                "activations split over several chips")
        return self.finding("exceeds_memory", text, ev,
                            f"batch {fits} fits ({size(self.peak_memory(fits)[0])} at its peak)")

    def low_utilization(self) -> Finding | None:
        s = self.s
        u = s.compute_utilization
        if u >= TARGET_UTILIZATION:
            return None
        text = (f"{pct(u)} of {s.spec.name}'s {s.precision} peak at batch {s.batch} "
                f"(target {pct(TARGET_UTILIZATION)})")
        ev = {"batch": s.batch, "compute_utilization": u, "target": TARGET_UTILIZATION}
        r = self.search_batch(TARGET_UTILIZATION)
        ev |= {"batch_reaching_target": r.batch, "search": r.method, "searched_up_to": r.tried,
               "search_stopped": r.stopped}
        if r.batch is not None:
            t = r.at
            ev |= {"utilization_at_that_batch": t.compute_utilization, "latency_s_at_that_batch": t.latency_s,
                   "throughput_at_that_batch": t.throughput_per_s}
            # a batch skipped as impossible leaves the order uncertain: then it is "a" batch, not "the first"
            which = "is the first to reach" if r.stopped is None else "reaches"
            return self.finding("low_utilization", text, ev,
                                f"batch {r.batch} {which} {pct(TARGET_UTILIZATION)} "
                                f"({pct(t.compute_utilization)}, {ms(t.latency_s)} per batch, "
                                f"{t.throughput_per_s:,.0f}/s; searched {r.method})")
        if r.tried == s.batch:  # no larger batch could be analyzed
            if r.no_batch:
                return self.finding("low_utilization", text, ev | {"batch_fixed": True},
                                    "the model has no batch dim (its inputs have none to set): more work per "
                                    "call must come from the model itself")
            why = f"no larger batch could be analyzed ({r.stopped})" if r.stopped else (
                f"the batch is already at the search limit ({MAX_BATCH})")
            return self.finding("low_utilization", text, ev, why)
        best = r.best
        shares = best.bound_share
        limit = max(shares, key=shares.get)
        vector = best.vector_share_of_compute_bound
        ev |= {"best_batch": best.batch, "best_utilization": best.compute_utilization,
               "bound_share_at_best": shares, "vector_share_of_compute_bound_at_best": vector}
        verdict = (f"larger batches cannot run (the search stopped {r.stopped})" if r.stopped else
                   "batch alone will not fill this chip")
        why = ""
        if limit == "compute" and vector >= 0.5:
            # Compute-bound far below the peak: the matrix units wait while other work runs on slower units.
            why = (f" ({pct(vector)} of that on non-matrix work, which runs at the vector rate of "
                   f"{si(best.rates.vector_ops_per_s, 'OP/s')}, not the matrix peak of "
                   f"{si(best.rates.peak_ops_per_s, 'OP/s')})")
        return self.finding("low_utilization", text, ev,
                            f"no batch from {s.batch} to {r.tried} reaches {pct(TARGET_UTILIZATION)}: the "
                            f"best is {pct(best.compute_utilization)} at batch {best.batch}, where "
                            f"{pct(shares[limit])} of the time is {limit}-bound{why}; {verdict}")

    def memory_bound(self) -> Finding | None:
        s = self.s
        share = s.bound_share["memory"]
        if share < MEMORY_BOUND_SHARE:
            return None
        text = f"{pct(share)} of the time is memory-bound ({size(s.dram_bytes)} of DRAM traffic)"
        ev = {"memory_bound_share": share, "dram_bytes": s.dram_bytes, "fusion": s.fusion}
        order = list(PRESETS)
        stronger = order[order.index(s.fusion) + 1:] if s.fusion in order else []
        options = {}
        for preset in stronger:
            t = self.at(fusion=preset)
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
        return self.finding("memory_bound", text, ev, mitigation)

    def below_ridge(self) -> Finding | None:
        s = self.s
        if not s.dram_bytes or s.arithmetic_intensity >= s.ridge_point:
            return None
        text = (f"arithmetic intensity {s.arithmetic_intensity:.1f} FLOP/B is below {s.spec.name}'s ridge "
                f"point {s.ridge_point:.1f} FLOP/B at {s.precision}: the roofline caps it at "
                f"{pct(s.arithmetic_intensity / s.ridge_point)} of peak")
        per = {}
        for prec in s.spec.precisions:
            try:
                t = self.at(precision=prec)
            except HwUtilError:
                continue
            per[prec] = {"arithmetic_intensity": t.arithmetic_intensity if t.dram_bytes else None,
                         "ridge_point": t.ridge_point, "latency_s": t.latency_s,
                         "peak_ops_per_s": t.rates.peak_ops_per_s}
        ev = {"precision": s.precision, "arithmetic_intensity": s.arithmetic_intensity,
              "ridge_point": s.ridge_point, "by_precision": per}
        # A mitigation must be faster: widening the type "passes" the ridge only by lowering the peak.
        faster = {p: v for p, v in per.items() if v["latency_s"] < 0.99 * s.latency_s}
        past = [(p, v) for p, v in faster.items()
                if v["arithmetic_intensity"] is None or v["arithmetic_intensity"] >= v["ridge_point"]]
        if past:
            p, v = min(past, key=lambda pv: pv[1]["latency_s"])
            mitigation = (f"at {p} the model passes the ridge ({v['arithmetic_intensity']:.1f} >= "
                          f"{v['ridge_point']:.1f} FLOP/B), latency {ms(s.latency_s)} -> "
                          f"{ms(v['latency_s'])}")
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
        return self.finding("below_ridge", text, ev, mitigation)

    def idle_units(self) -> Finding | None:
        s = self.s
        u = s.units_allocated
        idle = u["total"] - u["mean"]
        if idle / u["total"] < IDLE_SHARE:
            return None
        small = sum(k.latency_s for k in s.kernels if k.units < u["total"] / 2) / (s.latency_s or 1)
        text = (f"on average {idle:.1f} of {u['total']} {u['name']}s are idle; kernels using under half of "
                f"them take {pct(small)} of the time")
        ev = {"units_total": u["total"], "units_mean": u["mean"], "units_idle_mean": idle,
              "time_share_under_half": small}
        need = max(1, math.ceil(u["mean"]))
        # Only a partition the vendor defines (MIG profiles in the spec), the smallest that holds the
        # average number of busy units and the model's memory.
        peak = self.peak_memory(self.p.batch)[0]
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
        return self.finding("idle_units", text, ev, mitigation)

    def overhead_bound(self) -> Finding | None:
        s = self.s
        overhead = sum(k.overhead_s for k in s.kernels)
        share = overhead / s.latency_s
        if share < OVERHEAD_SHARE:
            return None
        # the backend's own per-kernel cost (a calibrated CPU measures its dispatch), not the spec's figure
        each = overhead / len(s.kernels)
        text = (f"{pct(share)} of the time is per-kernel overhead ({_n(len(s.kernels), 'kernel')} x "
                f"{each * 1e6:.3g} us)")
        ev = {"overhead_share": share, "kernels": len(s.kernels), "kernel_overhead_s": each}
        mitigation = "a larger batch amortizes each launch over more work"
        if s.fusion in PRESETS and s.fusion != "aggressive":
            t = self.at(fusion="aggressive")
            if len(t.kernels) < len(s.kernels):
                ev["kernels_aggressive"] = len(t.kernels)
                mitigation = (f"fusion preset aggressive launches {len(t.kernels)} kernels instead of "
                              f"{len(s.kernels)} (latency {ms(s.latency_s)} -> {ms(t.latency_s)}); "
                              + mitigation)
        return self.finding("overhead_bound", text, ev, mitigation)

    def spills(self) -> Finding | None:
        s = self.s
        spill = s.capacity["spill_bytes"]
        if not spill:
            return None
        n = sum(1 for k in s.kernels if k.spill_bytes)
        text = (f"{n} fused kernels outgrow {s.spec.name}'s {size(s.spec.onchip_bytes)} on-chip memory and "
                f"spill {size(spill)} of intermediates through DRAM")
        ev = {"spill_bytes": spill, "kernels_spilling": n, "onchip_bytes": s.spec.onchip_bytes}
        # What would keep them on chip, and only if it is faster per inference: less fusion, a smaller batch.
        order = list(PRESETS)
        options = {}
        weaker = order[:order.index(s.fusion)] if s.fusion in order else []
        for preset in weaker:
            t = self.at(fusion=preset)
            options[f"fusion {preset}"] = t
        if s.batch > 1:
            with contextlib.suppress(HwUtilError):  # a batch the model cannot take: not an alternative
                options[f"batch {s.batch // 2}"] = self.at(batch=s.batch // 2)
        per_inference = {k: t.latency_s / t.batch for k, t in options.items()}
        ev["alternatives"] = {k: {"latency_s_per_inference": v,
                                  "spill_bytes": options[k].capacity["spill_bytes"]}
                              for k, v in per_inference.items()}
        own = s.latency_s / s.batch
        faster = {k: v for k, v in per_inference.items() if v < 0.99 * own}
        if faster:
            k = min(faster, key=faster.get)
            mitigation = (f"{k} spills {size(options[k].capacity['spill_bytes'])} and is faster per "
                          f"inference ({ms(own)} -> {ms(faster[k])})")
        elif per_inference:
            tried = ", ".join(f"{k} is {ms(v)} per inference" for k, v in per_inference.items())
            mitigation = f"the spill costs less than the alternatives: {tried}, against {ms(own)}"
        else:
            mitigation = "no smaller batch or weaker fusion preset to try; a chip with more on-chip memory"
        return self.finding("spills", text, ev, mitigation)


def findings(a: Analyzer, p: Point, s: Schedule) -> list[Finding]:
    """Every rule's finding for point `p`, whose schedule `s` the Analyzer `a` produced."""
    if not s.kernels or not s.flops or not s.latency_s:
        return []  # nothing computes: no utilization to explain
    r = _Rules(a, p, s)
    return [f for rule in RULES if (f := getattr(r, rule)()) is not None]
