"""Whole-model analysis over hardware x batch x precision x fusion, reusing each stage's work.

A batch change re-binds and re-infers shapes (past batch 4, where the model is affine in the batch, its
shapes, kernels and peak memory come off lines through batches 1, 2 and 4: rescale.py, kernel_line.py); a
precision change re-prices bytes; a fusion preset change re-fuses; a hardware change only re-maps
(DESIGN.md: each arrow is a pure function of its inputs).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache

from .bindings import Bindings
from .dtypes import check_precision
from .errors import HwUtilError, NoBatchDim
from .fusion import FusedGraph, for_chip, fuse
from .fusion.contract import check_costs
from .gcpause import paused_gc
from .hardware import HardwareSpec, load_spec
from .hardware.mapping import Schedule, schedule
from .hardware.rates import default_precision
from .kernel_line import KernelLine, PeakLine, kernel_line, peak_line
from .profile import BindCache, BoundModel, Profile, Totals, bind
from .rescale import PROBE_BATCH, checked, extrapolate
from .units import size

REPORT_HARDWARE = ["xeon-8490h", "h100-sxm5", "kpu-t256", "tpu-v4"]
MAX_BATCH = 1024  # the batch search stops here
EXHAUSTIVE = 64  # at most this many batches checked one by one between two powers of two


@dataclass(frozen=True)
class Point:
    model: str
    hardware: str
    batch: int | None  # None: the model's own shapes (no symbolic batch to bind)
    precision: str  # as asked: "auto", "model" or a precision
    fusion: str
    threads: int | None = None  # CPU: cores to use (all if None)


class Analyzer:
    """Caches every stage so a sweep recomputes only what its change invalidates."""

    def __init__(self, shapes: dict | None = None, dims: dict | None = None, scoped: bool = False):
        self.shapes = dict(shapes or {})
        self.dims = dict(dims or {})
        self.scoped = scoped  # bindings shared by several models: each takes its own (bindings.Bindings)
        self._binds = BindCache()  # one load per file, one shape inference per distinct binding
        self._bound = cache(self._bind)
        self._profile = cache(self._profile_at)
        self._costed: dict[tuple[int, str], Profile] = {}
        self._fused = cache(self._fuse)
        self._spec = cache(load_spec)
        self._affine = cache(self._affine_in_batch)
        self._same_kernels = cache(self._same_kernels_at_batches)
        self._kernel_line = cache(self._kernel_line_at)
        self._peak_line = cache(self._peak_line_at)
        # (graph, preset) -> the graphs the passes ran on (each holds its graph: the id stays its own)
        self._partitions: dict[tuple[int, str], list[FusedGraph]] = {}

    def _bind(self, model: str, batch: int | None) -> BoundModel:
        with paused_gc():
            return self._bind_at(model, batch)

    def _extrapolated(self, model: str, batch: int | None) -> bool:
        """Is `model` at `batch` taken from batches 1 and 2 (rescale.py) rather than inferred?"""
        return batch is not None and batch > 2 and batch != PROBE_BATCH and self._affine(model)

    def _bind_at(self, model: str, batch: int | None) -> BoundModel:
        if self._extrapolated(model, batch):
            scaled = extrapolate(self._bound(model, 1), self._bound(model, 2), batch)
            if scaled is not None:
                return scaled
        return bind(model, Bindings(self.shapes, self.dims, batch, self.scoped), self._binds)

    def _affine_in_batch(self, model: str) -> bool:
        """May other batches of `model` be extrapolated from batches 1 and 2 (rescale.py)? Only if that
        reproduced a really inferred third batch exactly; a model that cannot take those batches may not."""
        try:
            return checked(self._bound(model, 1), self._bound(model, 2), self._bound(model, PROBE_BATCH))
        except HwUtilError:
            return False

    def affine_in_batch(self, model: str) -> bool:
        """May `model` at other batches be extrapolated (rescale.py)? Binds it at batches 1, 2 and
        PROBE_BATCH to know, as the first search for a larger batch does."""
        return self._affine(model)

    def bound(self, model: str, batch: int | None) -> BoundModel:
        return self._bound(model, batch)

    def _profile_at(self, model: str, batch: int, precision: str) -> Profile:
        bound = self._bound(model, batch)
        key = (id(bound.graph), precision)  # a graph two bindings share is costed once per precision
        p = Profile(bound, precision, like=self._costed.get(key))
        self._costed[key] = p  # holds its graph: the id stays its own
        return p

    def _fuse(self, model: str, batch: int, precision: str, fusion: str) -> FusedGraph:
        with paused_gc():
            return self._fuse_at(model, batch, precision, fusion)

    def _fuse_at(self, model: str, batch: int, precision: str, fusion: str) -> FusedGraph:
        profile = self._profile(model, batch, precision)
        if self._extrapolated(model, batch) and self._same_kernels(model, precision, fusion):
            # The passes chose the same kernels at batches 1, 2 and PROBE_BATCH: at a batch extrapolated
            # from those, they are those kernels, costed at this batch.
            one = self._fused(model, 1, precision, fusion)
            return _fused_like(profile, one)
        # The passes read the graph and each node's kind, never bytes: the same graph (one shape inference
        # serves the default batch and batch 1) with the same kinds at another precision is partitioned
        # the same, so only the costing is new.
        kinds = [nc.cost.kind for nc in profile.costs.nodes]
        for other in self._partitions.get((id(profile.graph), fusion), ()):
            if other.profile.graph is profile.graph and \
                    [nc.cost.kind for nc in other.profile.costs.nodes] == kinds:
                return _fused_like(profile, other)
        fused = fuse(profile, fusion)
        self._partitions.setdefault((id(profile.graph), fusion), []).append(fused)
        return fused

    def _same_kernels_at_batches(self, model: str, precision: str, fusion: str) -> bool:
        return len({_partition_key(self._fused(model, b, precision, fusion).partition)
                    for b in (1, 2, PROBE_BATCH)}) == 1

    def _kernel_line_at(self, model: str, precision: str, fusion: str) -> KernelLine | None:
        if not self._affine(model) or not self._same_kernels(model, precision, fusion):
            return None
        return kernel_line([self._fused(model, b, precision, fusion) for b in (1, 2, PROBE_BATCH)])

    def _peak_line_at(self, model: str, precision: str) -> PeakLine | None:
        if not self._affine(model):
            return None
        return peak_line([self._profile(model, b, precision) for b in (1, 2, PROBE_BATCH)])

    def peak_memory_bytes(self, model: str, batch: int | None, precision: str) -> int:
        """The model's peak memory at `batch` (its Profile's, from the line through batches 1, 2 and
        PROBE_BATCH where there is one: kernel_line.py)."""
        if self._extrapolated(model, batch) and (line := self._peak_line(model, precision)) is not None \
                and (peak := line.peak_memory_bytes(batch)) is not None:
            return peak
        return self._profile(model, batch, precision).totals.peak_memory_bytes

    def spec(self, hw: str) -> HardwareSpec:
        return self._spec(hw)

    def profile(self, model: str, batch: int = 1, precision: str = "model") -> Profile:
        return self._profile(model, batch, precision)

    def fused(self, model: str, batch: int, precision: str, fusion: str) -> FusedGraph:
        """Fused with a preset; `auto` without a chip is ONNX Runtime's CPU rules (`for_chip`)."""
        return self._fused(model, batch, precision, for_chip(fusion, None))

    def batches(self, model: str, asked: Sequence[int] | None = None,
                also: Sequence[int] = ()) -> list[int | None]:
        """The batches a command runs `model` at: those asked for, else the default every command takes from
        here: batch 1 (then `also`, larger batches a command looks at too) for a model with an unbound batch
        dim, the model's own shapes (None) for one whose shapes are all static. A model that cannot be bound
        as it stands gets its own shapes too: analyzing it reports why. (`analyze` and `diff` pass None
        themselves: binding then takes the same batch 1 and says so in the notes.)"""
        if asked:
            return list(asked)
        try:
            defaulted = self.bound(model, None).batch_defaulted
        except HwUtilError:
            return [None]
        return [1, *also] if defaulted else [None]

    def characteristics(self, model: str, batch: int | None, fusion: str) -> dict:
        """The model's own numbers, before any chip: the seed report's "model characteristics" row."""
        p = self.profile(model, batch)
        f = self.fused(model, batch, "model", fusion)
        t = p.totals
        return {"macs": t.macs, "flops": t.flops, "params": t.params,
                "peak_memory_bytes": t.peak_memory_bytes,
                "arithmetic_intensity": f.totals["arithmetic_intensity"], "kernels": f.totals["kernels"],
                "nodes": len(p.costs.nodes), "precision": p.model_precision, "fusion": f.preset}

    def resolve_precision(self, spec: HardwareSpec, precision: str, model: str, batch: int) -> str:
        if precision == "auto":
            return default_precision(spec)
        if precision == "model":
            return self.profile(model, batch).model_precision
        return check_precision(precision)

    def run(self, p: Point) -> Schedule:
        with paused_gc():
            return self._run(p)

    def _run(self, p: Point) -> Schedule:
        spec = self.spec(p.hardware)
        prec = self.resolve_precision(spec, p.precision, p.model, p.batch)
        batch = p.batch
        if batch is None:  # the model's own batch: the leading dim of its first input
            shape = next(iter(self.bound(p.model, None).inputs.values()), ())
            batch = shape[0] if shape and shape[0] > 0 else 1
        fusion = for_chip(p.fusion, spec.kind)
        if self._extrapolated(p.model, p.batch) and (line := self._kernel_line(p.model, prec, fusion)) \
                and (kernels := line.at(p.batch)) is not None:
            return schedule(kernels, spec, prec, batch, p.threads)  # as the fused graph at p.batch would be
        return schedule(self._fused(p.model, p.batch, prec, fusion), spec, prec, batch, p.threads)


def _fused_like(profile: Profile, like: FusedGraph) -> FusedGraph:
    """`profile` fused into the kernels the passes chose for `like`, costed afresh."""
    fused = FusedGraph(profile, like.partition, like.preset, like.passes, like.pass_merges)
    check_costs(fused)
    return fused


def _partition_key(part) -> tuple:
    """What a partition decides, without its group ids: the kernels (members and label), folded, tiled and
    load-time nodes."""
    kernels = frozenset((tuple(m), part.labels.get(g)) for g, m in part.members.items())
    return kernels, frozenset(part.folded), frozenset(part.tiled), frozenset(part.static)


@dataclass
class BatchSearch:
    best: Schedule  # the highest utilization seen
    tried: int  # the largest batch analyzed
    batch: int | None = None  # the first batch found at the target, and its schedule
    at: Schedule | None = None
    method: str = "powers of two"
    first: bool = True  # every smaller batch was checked: `batch` is the first at the target
    stopped: str | None = None  # why a batch could not be analyzed, if one could not
    no_batch: bool = False  # the model has no batch dim at all


class WhatIf:
    """One analyzed point, and that point with one thing changed, analyzed by the same Analyzer (its caches
    make each what-if cheap) instead of guessed. What-ifs keep the precision the point was mapped at."""

    def __init__(self, a: Analyzer, p: Point, s: Schedule):
        self.a, self.s = a, s
        self.p = replace(p, precision=s.precision)

    def at(self, **change) -> Schedule:
        return self.a.run(replace(self.p, **change))

    def try_at(self, **change) -> Schedule | None:
        """The what-if, or None where the model or the chip cannot take it (a batch the file fixes, say):
        such a what-if is no alternative."""
        try:
            return self.at(**change)
        except HwUtilError:
            return None

    def totals(self, batch: int | None, precision: str | None = None) -> Totals:
        """The model's own numbers (peak memory, weights) at another batch or precision."""
        return self.a.profile(self.p.model, batch, precision or self.s.precision).totals

    def halved_batch_that_fits(self, capacity: float) -> int | None:
        """The largest of half the point's batch, a quarter, ... whose peak memory fits in `capacity`; None
        where none does or the model cannot take a smaller batch."""
        b = self.s.batch
        while b > 1:
            b //= 2
            try:
                if self.totals(b).peak_memory_bytes <= capacity:
                    return b
            except HwUtilError:
                return None
        return None

    def search_batch(self, target: float) -> BatchSearch:
        """Search upward from the point's batch for the first batch whose compute utilization reaches
        `target`: powers of two until one does, then every batch between it and the previous power (at most
        EXHAUSTIVE of them; beyond that, bisection, which finds a batch at the target but not surely the
        first). Utilization is not monotonic in batch (wave quantization, capacity cliffs), so the batches
        between smaller powers are not all checked; the evidence says so.
        A batch that cannot run (a size fixed in the file, or more memory than the chip has) is skipped
        between powers and ends the doubling."""
        s = self.s
        r = BatchSearch(best=s, tried=s.batch)
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
        r.first = False
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

    def _try(self, r: BatchSearch, batch: int) -> Schedule | None:
        try:
            peak = self.a.peak_memory_bytes(self.p.model, batch, self.s.precision)
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


def plan(a: Analyzer, model: str | os.PathLike, hardware: list[str] | str = "h100-sxm5",
         batch: list[int] | int | None = None, precision: list[str] | str = "auto", fusion: str = "auto",
         threads: int | None = None) -> list[Point]:
    """The points `analyze` maps: hardware x batch x precision. Without a batch, a model with a symbolic
    batch dim runs at batch 1 (binding says so in the notes) and one with static shapes at its own."""
    hws = [hardware] if isinstance(hardware, str) else list(hardware)
    batches = [batch] if isinstance(batch, int) or batch is None else list(batch)
    precs = [precision] if isinstance(precision, str) else list(precision)
    for b in batches:
        if b is not None and b < 1:
            raise HwUtilError(f"--batch {b}: must be at least 1")
    return [Point(os.fspath(model), hw, b, p, fusion, threads) for hw in hws for b in batches for p in precs]


def analyze(model: str | os.PathLike, hardware: list[str] | str = "h100-sxm5",
            batch: list[int] | int | None = None,
            precision: list[str] | str = "auto", fusion: str = "auto", shapes: dict | None = None,
            dims: dict | None = None, threads: int | None = None) -> list[Schedule]:
    """The Python face of `onnx-hwutil analyze`: one Schedule per hardware x batch x precision."""
    a = Analyzer(shapes, dims)
    return [a.run(p) for p in plan(a, model, hardware, batch, precision, fusion, threads)]
