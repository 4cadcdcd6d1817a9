"""Findings: the observations the seed report draws by eye, computed, each with its evidence and a mitigation.

Every rule looks at one analyzed point (model x chip x batch x precision x fusion) and, where the mitigation
is a what-if, analyzes that what-if with the same Analyzer (its caches make that cheap) instead of guessing:
the batch that reaches a utilization is found by search over batch, the DRAM bytes a fusion preset saves by
fusing with it, the precision that passes the ridge point by mapping at that precision.

A finding is `{"rule", "hardware", "finding", "evidence", "mitigation"}`; evidence holds the numbers (SI
units, fractions for shares), so gates and scripts can act on them without parsing the sentence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .analysis import Analyzer, Point
from .errors import HwUtilError
from .fusion import PRESETS
from .hardware.mapping import Schedule
from .report.units import size

TARGET_UTILIZATION = 0.5  # the seed report's "saturate": half the chip's peak at this precision
MAX_BATCH = 1024  # the batch search stops here
MEMORY_BOUND_SHARE = 0.3  # time share memory-bound above which fusion and precision are worth a look
OVERHEAD_SHARE = 0.25
IDLE_SHARE = 0.25  # units idle on average, as a share of the chip
RULES = ("low_utilization", "memory_bound", "below_ridge", "idle_units", "overhead_bound", "spills")


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


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _ms(s: float) -> str:
    return f"{s * 1e3:.3g} ms"


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

    def batch_fixed(self) -> bool:
        return self.p.batch is None and self.a.default_batch(self.p.model) is None

    def search_batch(self, target: float) -> tuple[int | None, Schedule | None, Schedule]:
        """The first batch whose compute utilization reaches `target`: doubling, then bisection between
        the last batch below and the first at or above (utilization is not monotonic in batch everywhere, so
        this is the first crossing the search meets). Returns (batch, its schedule, the best seen)."""
        s = self.s
        best, lo, hi, hi_s = s, s.batch, None, None
        b = s.batch
        while b < MAX_BATCH:
            b = min(2 * b, MAX_BATCH)
            try:
                t = self.at(batch=b)
            except HwUtilError:  # a batch the model cannot take (a reshape with a fixed size, say)
                break
            best = max(best, t, key=lambda x: x.compute_utilization)
            if t.compute_utilization >= target:
                hi, hi_s = b, t
                break
            lo = b
        if hi is None:
            return None, None, best
        while hi - lo > 1:
            mid = (lo + hi) // 2
            try:
                t = self.at(batch=mid)
            except HwUtilError:  # a batch between two the model takes, which it cannot (a fixed reshape)
                break
            if t.compute_utilization >= target:
                hi, hi_s = mid, t
            else:
                lo = mid
        return hi, hi_s, best

    def low_utilization(self) -> Finding | None:
        s = self.s
        u = s.compute_utilization
        if u >= TARGET_UTILIZATION:
            return None
        text = (f"{_pct(u)} of {s.spec.name}'s {s.precision} peak at batch {s.batch} "
                f"(target {_pct(TARGET_UTILIZATION)})")
        ev = {"batch": s.batch, "compute_utilization": u, "target": TARGET_UTILIZATION}
        if self.batch_fixed():
            return self.finding("low_utilization", text, ev | {"batch_fixed": True},
                                f"the file fixes the batch at {s.batch}: export it with a symbolic batch dim "
                                "to let a larger batch fill the chip")
        b, t, best = self.search_batch(TARGET_UTILIZATION)
        if b is not None:
            ev |= {"batch_reaching_target": b, "utilization_at_that_batch": t.compute_utilization,
                   "latency_s_at_that_batch": t.latency_s, "throughput_at_that_batch": t.throughput_per_s}
            return self.finding("low_utilization", text, ev,
                                f"batch {b} is the first to reach {_pct(TARGET_UTILIZATION)} "
                                f"({_pct(t.compute_utilization)}, {_ms(t.latency_s)} per batch, "
                                f"{t.throughput_per_s:,.0f}/s)")
        shares = best.bound_share
        limit = max(shares, key=shares.get)
        ev |= {"batch_reaching_target": None, "searched_up_to": MAX_BATCH, "best_batch": best.batch,
               "best_utilization": best.compute_utilization, "bound_share_at_best": shares}
        return self.finding("low_utilization", text, ev,
                            f"no batch up to {MAX_BATCH} reaches it: the best is "
                            f"{_pct(best.compute_utilization)} at batch {best.batch}, where "
                            f"{_pct(shares[limit])} of the time is {limit}-bound; batch alone will not fill "
                            "this chip")

    def memory_bound(self) -> Finding | None:
        s = self.s
        share = s.bound_share["memory"]
        if share < MEMORY_BOUND_SHARE:
            return None
        text = f"{_pct(share)} of the time is memory-bound ({size(s.dram_bytes)} of DRAM traffic)"
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
                          f"{size(o['saved_bytes'])} ({_pct(o['saved_bytes'] / s.dram_bytes)}) of DRAM "
                          f"traffic: latency {_ms(s.latency_s)} -> {_ms(o['latency_s'])}")
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
                f"{_pct(s.arithmetic_intensity / s.ridge_point)} of peak")
        per = {}
        for prec in s.spec.precisions:
            try:
                t = self.at(precision=prec)
            except HwUtilError:
                continue
            per[prec] = {"arithmetic_intensity": t.arithmetic_intensity if t.dram_bytes else None,
                         "ridge_point": t.ridge_point, "latency_s": t.latency_s}
        ev = {"precision": s.precision, "arithmetic_intensity": s.arithmetic_intensity,
              "ridge_point": s.ridge_point, "by_precision": per}
        # A mitigation must be faster: widening the type "passes" the ridge only by lowering the peak.
        faster = {p: v for p, v in per.items() if v["latency_s"] < 0.99 * s.latency_s}
        past = [(p, v) for p, v in faster.items()
                if v["arithmetic_intensity"] is None or v["arithmetic_intensity"] >= v["ridge_point"]]
        if past:
            p, v = min(past, key=lambda pv: pv[1]["latency_s"])
            mitigation = (f"at {p} the model passes the ridge ({v['arithmetic_intensity']:.1f} >= "
                          f"{v['ridge_point']:.1f} FLOP/B), latency {_ms(s.latency_s)} -> "
                          f"{_ms(v['latency_s'])}")
        elif faster:
            p = min(faster, key=lambda q: faster[q]["latency_s"])
            v = faster[p]
            mitigation = (f"{p} is faster ({_ms(s.latency_s)} -> {_ms(v['latency_s'])}) but stays below its "
                          f"ridge ({v['arithmetic_intensity']:.1f} < {v['ridge_point']:.1f} FLOP/B): "
                          "narrower types raise this chip's peak as fast as the intensity; raise intensity "
                          "with batch or fusion")
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
                f"them take {_pct(small)} of the time")
        ev = {"units_total": u["total"], "units_mean": u["mean"], "units_idle_mean": idle,
              "time_share_under_half": small}
        need = max(1, math.ceil(u["mean"]))
        if s.spec.kind == "gpu":
            mitigation = (f"run other work on the idle {u['name']}s (concurrent streams or instances), or "
                          f"give this model a partition of about {need} {u['name']}s (MIG); a larger batch "
                          "gives each kernel more tiles")
        elif s.spec.kind == "cpu" and u["total"] // need >= 2:
            mitigation = (f"run {u['total'] // need} instances side by side with {need} threads each, or a "
                          "larger batch")
        else:
            mitigation = (f"a larger batch gives each kernel more parallel work, or several models can share "
                          f"the chip; this model keeps about {need} {u['name']}s busy")
        return self.finding("idle_units", text, ev, mitigation)

    def overhead_bound(self) -> Finding | None:
        s = self.s
        share = s.bound_share["overhead"]
        if share < OVERHEAD_SHARE:
            return None
        text = (f"{_pct(share)} of the time is per-kernel overhead ({len(s.kernels)} kernels x "
                f"{s.spec.kernel_overhead_s * 1e6:.3g} us)")
        ev = {"overhead_share": share, "kernels": len(s.kernels),
              "kernel_overhead_s": s.spec.kernel_overhead_s}
        mitigation = "a larger batch amortizes each launch over more work"
        if s.fusion != "aggressive" and s.fusion in PRESETS:
            t = self.at(fusion="aggressive")
            ev["kernels_aggressive"] = len(t.kernels)
            mitigation = (f"fusion preset aggressive launches {len(t.kernels)} kernels instead of "
                          f"{len(s.kernels)} (latency {_ms(t.latency_s)}); " + mitigation)
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
        return self.finding("spills", text, ev,
                            "a smaller batch or a less aggressive fusion preset keeps intermediates on chip")


def findings(a: Analyzer, p: Point, s: Schedule) -> list[Finding]:
    """Every rule's finding for point `p`, whose schedule `s` the Analyzer `a` produced."""
    r = _Rules(a, p, s)
    return [f for rule in RULES if (f := getattr(r, rule)()) is not None]
