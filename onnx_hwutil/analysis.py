"""Whole-model analysis over hardware x batch x precision x fusion, reusing each stage's work.

A batch change re-binds and re-infers shapes; a precision change re-prices bytes; a fusion preset change
re-fuses; a hardware change only re-maps (DESIGN.md: each arrow is a pure function of its inputs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

from .bindings import Bindings
from .dtypes import check_precision
from .errors import HwUtilError
from .fusion import FusedGraph, fuse
from .hardware import HardwareSpec, load_spec
from .hardware.mapping import Schedule, schedule
from .hardware.rates import default_precision
from .profile import BoundModel, Profile, bind

REPORT_HARDWARE = ["xeon-8490h", "h100-sxm5", "kpu-t256", "tpu-v4"]


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
        self._bound = cache(self._bind)
        self._profile = cache(self._profile_at)
        self._fused = cache(self._fuse)
        self._spec = cache(load_spec)

    def _bind(self, model: str, batch: int | None) -> BoundModel:
        return bind(model, Bindings(self.shapes, self.dims, batch, self.scoped))

    def bound(self, model: str, batch: int | None) -> BoundModel:
        return self._bound(model, batch)

    def _profile_at(self, model: str, batch: int, precision: str) -> Profile:
        return Profile(self._bound(model, batch), precision)

    def _fuse(self, model: str, batch: int, precision: str, fusion: str) -> FusedGraph:
        return fuse(self._profile(model, batch, precision), fusion)

    def spec(self, hw: str) -> HardwareSpec:
        return self._spec(hw)

    def profile(self, model: str, batch: int = 1, precision: str = "model") -> Profile:
        return self._profile(model, batch, precision)

    def fused(self, model: str, batch: int, precision: str, fusion: str) -> FusedGraph:
        return self._fused(model, batch, precision, fusion)

    def default_batch(self, model: str) -> int | None:
        """No batch asked for: the model's own shapes if they are all static, else batch 1."""
        return 1 if self.bound(model, None).batch_defaulted else None

    def characteristics(self, model: str, batch: int | None, fusion: str) -> dict:
        """The model's own numbers, before any chip: the seed report's "model characteristics" row."""
        p = self.profile(model, batch)
        f = self.fused(model, batch, "model", fusion)
        t = p.totals
        return {"macs": t.macs, "flops": t.flops, "params": t.params,
                "peak_memory_bytes": t.peak_memory_bytes,
                "arithmetic_intensity": f.totals["arithmetic_intensity"], "kernels": f.totals["kernels"],
                "nodes": len(p.costs.nodes), "precision": p.model_precision}

    def resolve_precision(self, spec: HardwareSpec, precision: str, model: str, batch: int) -> str:
        if precision == "auto":
            return default_precision(spec)
        if precision == "model":
            return self.profile(model, batch).model_precision
        return check_precision(precision)

    def run(self, p: Point) -> Schedule:
        spec = self.spec(p.hardware)
        prec = self.resolve_precision(spec, p.precision, p.model, p.batch)
        batch = p.batch
        if batch is None:  # the model's own batch: the leading dim of its first input
            shape = next(iter(self.bound(p.model, None).inputs.values()), ())
            batch = shape[0] if shape and shape[0] > 0 else 1
        return schedule(self.fused(p.model, p.batch, prec, p.fusion), spec, prec, batch, p.threads)


def plan(a: Analyzer, model: str | os.PathLike, hardware: list[str] | str = "h100-sxm5",
         batch: list[int] | int | None = None, precision: list[str] | str = "auto", fusion: str = "runtime",
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
            precision: list[str] | str = "auto", fusion: str = "runtime", shapes: dict | None = None,
            dims: dict | None = None, threads: int | None = None) -> list[Schedule]:
    """The Python face of `onnx-hwutil analyze`: one Schedule per hardware x batch x precision."""
    a = Analyzer(shapes, dims)
    return [a.run(p) for p in plan(a, model, hardware, batch, precision, fusion, threads)]
