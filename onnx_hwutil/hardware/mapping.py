"""Fused subgraphs onto one chip: per kernel, units allocated, compute, memory and overhead time, energy.

Time of a kernel = max(compute, memory) + the chip's fixed per-kernel overhead (DESIGN.md). Compute uses
only the units the kernel can occupy (the backend decides). Memory time is DRAM traffic over DRAM bandwidth
plus on-chip hits over the on-chip bandwidth: an activation read soon after it was written, while everything
written since still fits in the chip's last-level memory (L2, CMEM, L3), is a hit. Weights are always read
from DRAM (one inference, cold). A fused kernel whose working set exceeds that memory spills its
intermediates: they are written and read back through DRAM.

Energy = matrix ops x J/op + other ops x J/op + DRAM bytes x J/byte + idle power x time.
Kernels run one after another on one stream: throughput = batch / latency.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from ..dtypes import element_bits
from ..fusion import FusedGraph
from ..profile import SCHEMA
from .backends import BACKENDS
from .rates import CALIBRATED_PRECISION, Rates, rates
from .spec import HardwareSpec

if TYPE_CHECKING:
    from ..kernel_line import Kernels


@dataclass(frozen=True)
class KernelTime:
    id: int
    label: str
    units: int
    compute_s: float
    memory_s: float
    overhead_s: float
    flops: int
    dram_bytes: int
    onchip_bytes: int  # activation reads served on chip (written recently enough to still be there)
    spill_bytes: int  # intermediates of a fused kernel that did not fit on chip
    energy_compute_j: float
    energy_dram_j: float
    energy_static_j: float
    vector_s: float = 0.0  # the part of compute_s spent on non-matrix work, at the vector rate

    @property
    def latency_s(self) -> float:
        return max(self.compute_s, self.memory_s) + self.overhead_s

    @property
    def bound(self) -> str:
        if self.overhead_s >= max(self.compute_s, self.memory_s):
            return "overhead"
        return "compute" if self.compute_s >= self.memory_s else "memory"

    @property
    def energy_j(self) -> float:
        return self.energy_compute_j + self.energy_dram_j + self.energy_static_j


class _Window:
    """Which recently written buffers are still on chip: a write pushes older data out, oldest first."""

    def __init__(self, capacity: float):
        self.capacity = capacity
        self.written = 0
        self.at: dict[str, tuple[int, int]] = {}  # buffer -> (bytes written before it, its size)

    def write(self, buf: str, size: int) -> None:
        self.at[buf] = (self.written, size)
        self.written += size

    def hit(self, buf: str) -> bool:
        w = self.at.get(buf)
        return w is not None and self.written - w[0] <= self.capacity


@dataclass
class Schedule:
    spec: HardwareSpec
    rates: Rates
    batch: int
    fusion: str
    kernels: list[KernelTime]
    notes: list[str] = field(default_factory=list)
    calibrated: bool = False  # measured rate tables set the times (else the datasheet peaks)
    coverage: dict = field(default_factory=dict)  # what the counts leave out (ops.GraphCosts.coverage)

    @property
    def uncalibrated(self) -> bool:
        """A calibrated spec asked for a precision its calibration never measured."""
        return bool(self.spec.calibration) and not self.calibrated

    @property
    def precision(self) -> str:
        return self.rates.precision

    def kernel(self, kid: int) -> KernelTime | None:
        return next((k for k in self.kernels if k.id == kid), None)

    @cached_property
    def latency_s(self) -> float:
        return sum(k.latency_s for k in self.kernels)

    @property
    def throughput_per_s(self) -> float:
        return self.batch / self.latency_s if self.latency_s else 0.0

    @cached_property
    def flops(self) -> int:
        return sum(k.flops for k in self.kernels)

    @cached_property
    def dram_bytes(self) -> int:
        return sum(k.dram_bytes for k in self.kernels)

    @property
    def attained_ops_per_s(self) -> float:
        return self.flops / self.latency_s if self.latency_s else 0.0

    @property
    def compute_utilization(self) -> float:
        return self.attained_ops_per_s / self.rates.peak_ops_per_s

    @property
    def memory_bandwidth_utilization(self) -> float:
        return self.dram_bytes / self.latency_s / self.spec.dram_bandwidth if self.latency_s else 0.0

    @property
    def arithmetic_intensity(self) -> float:
        """FLOPs per DRAM byte as mapped: after fusion, spills and on-chip hits (DESIGN.md)."""
        return self.flops / self.dram_bytes if self.dram_bytes else float("inf")

    @property
    def ridge_point(self) -> float:
        """The intensity at which this chip's roofline turns from memory- to compute-bound."""
        return self.rates.peak_ops_per_s / self.spec.dram_bandwidth

    @cached_property
    def capacity(self) -> dict:
        """Where the chip's on-chip memory ran out: the cliffs that can make a larger batch slower."""
        hits = sum(k.onchip_bytes for k in self.kernels)
        acts = hits + sum(k.dram_bytes for k in self.kernels)
        return {"onchip_hit_fraction": hits / acts if acts else 0.0,
                "spill_bytes": sum(k.spill_bytes for k in self.kernels)}

    @cached_property
    def units_allocated(self) -> dict:
        t = self.latency_s or 1.0
        return {"mean": round(sum(k.units * k.latency_s for k in self.kernels) / t, 3),
                "max": max((k.units for k in self.kernels), default=0), "total": self.spec.units,
                "name": self.spec.unit_name}

    @cached_property
    def energy(self) -> dict:
        return {"total_j": sum(k.energy_j for k in self.kernels),
                "compute_j": sum(k.energy_compute_j for k in self.kernels),
                "dram_j": sum(k.energy_dram_j for k in self.kernels),
                "static_j": sum(k.energy_static_j for k in self.kernels)}

    @cached_property
    def vector_share_of_compute_bound(self) -> float:
        """Of the time in compute-bound kernels, the share spent on non-matrix work at the vector rate: a
        chip can be compute-bound far below its matrix peak when that work dominates."""
        ks = [k for k in self.kernels if k.bound == "compute"]
        total = sum(k.compute_s for k in ks)
        return sum(k.vector_s for k in ks) / total if total else 0.0

    @cached_property
    def bound_share(self) -> dict:
        t = self.latency_s or 1.0
        share = {"compute": 0.0, "memory": 0.0, "overhead": 0.0}
        for k in self.kernels:
            share[k.bound] += k.latency_s / t
        return {b: round(v, 6) for b, v in share.items()}

    def to_dict(self, per_subgraph: bool = True) -> dict:
        d = {
            "schema": SCHEMA, "hardware": self.spec.name, "precision": self.precision, "batch": self.batch,
            "fusion": self.fusion, "calibrated": self.calibrated, "latency_s": self.latency_s,
            "throughput_per_s": self.throughput_per_s,
            "compute_utilization": self.compute_utilization,
            "memory_bandwidth_utilization": self.memory_bandwidth_utilization,
            "attained_ops_per_s": self.attained_ops_per_s, "peak_ops_per_s": self.rates.peak_ops_per_s,
            "dram_bandwidth_bytes_per_s": self.spec.dram_bandwidth,
            "arithmetic_intensity": self.arithmetic_intensity if self.dram_bytes else None,
            "ridge_point": self.ridge_point,
            "matrix_units": self.rates.matrix_units,
            "units_allocated": self.units_allocated,
            "energy_per_batch_j": self.energy["total_j"],
            "energy_per_inference_j": self.energy["total_j"] / self.batch,
            "energy_breakdown_j": {k: v for k, v in self.energy.items() if k != "total_j"},
            "bound_share": self.bound_share, "kernels": len(self.kernels), "flops": self.flops,
            "dram_bytes": self.dram_bytes, "capacity": self.capacity, "coverage": self.coverage,
            "notes": self.notes,
        }
        if per_subgraph:
            d["subgraphs"] = [{"id": k.id, "label": k.label, "units": k.units, "latency_s": k.latency_s,
                               "compute_s": k.compute_s, "memory_s": k.memory_s, "overhead_s": k.overhead_s,
                               "bound": k.bound, "energy_per_batch_j": k.energy_j, "flops": k.flops,
                               "dram_bytes": k.dram_bytes}
                              for k in self.kernels]
        return d


def schedule(fused: FusedGraph | Kernels, spec: HardwareSpec, precision: str, batch: int,
             threads: int | None = None) -> Schedule:
    """Map every kernel of a fused graph (or of its extrapolation to another batch: kernel_line.py) onto
    `spec` at `precision` (the fused graph's bytes must already be priced at that precision); `threads`
    limits a CPU to that many cores."""
    r = rates(spec, precision)
    backend = BACKENDS[spec.kind](spec, r, threads)
    elem = element_bits(1, precision) / 8  # bytes of one float element at this precision
    window = _Window(spec.onchip_bytes)
    notes = fused.coverage_notes + list(r.notes)
    kernels: list[KernelTime] = []
    approx = 0
    for sub in fused.subgraphs:
        if not sub.is_kernel:
            continue
        gemms, int8 = sub.gemms, sub.int8
        matrix_flops = 2 * sub.matrix_macs
        approx += sub.approx_nodes
        vector_flops = max(sub.flops - matrix_flops, 0)
        onchip = dram = 0
        for buf, b, is_weight in sub.reads:
            if not is_weight and window.hit(buf):
                onchip += b
            else:
                dram += b
        dram += sub.bytes_written
        internal = sub.working_set_bytes - sub.dram_bytes
        spill = 2 * internal if internal > 0 and sub.working_set_bytes > spec.onchip_bytes else 0
        dram += spill  # spilled intermediates: written out and read back
        dram += sum(backend.refetch_bytes(g, elem) * g.serial for g in gemms)
        for buf, b in sub.writes:
            window.write(buf, b)
        elements = max(int(sub.bytes_written / elem), 1)
        matrix_s, vector_s, units = backend.compute(gemms, vector_flops, elements, int8)
        compute_s = matrix_s + vector_s
        memory_s = backend.memory_time(dram, onchip)
        overhead = backend.overhead()
        latency = max(compute_s, memory_s) + overhead
        kernels.append(KernelTime(
            id=sub.id, label=sub.label, units=max(1, min(units, spec.units)), compute_s=compute_s,
            vector_s=vector_s,
            memory_s=memory_s, overhead_s=overhead, flops=sub.flops, dram_bytes=dram, onchip_bytes=onchip,
            spill_bytes=spill,
            energy_compute_j=matrix_flops * r.matrix_j_per_op + vector_flops * r.vector_j_per_op,
            energy_dram_j=dram * spec.j_per_dram_byte, energy_static_j=spec.idle_w * latency))
    if not kernels:
        notes.append(f"{spec.name}: no kernel runs: every node is a view, a shape computation or folded at "
                     "load time, so latency, throughput and utilization are 0")
    if approx:
        notes.append(f"{approx} matrix ops have no GEMM geometry we know; mapped as one GEMM of equal MACs")
    if spec.modeling:
        notes.append(f"{spec.name}: {spec.modeling}")
    calibrated = getattr(backend, "cal", None) is not None
    if calibrated:
        notes.append(f"{spec.name}: calibrated rates for {backend.units} threads "
                     f"({spec.calibration['source']})")
    elif spec.calibration:
        notes.append(f"{spec.name}: uncalibrated at {precision}: its calibration measured "
                     f"{CALIBRATED_PRECISION} only, so {precision} uses the datasheet peaks")
    return Schedule(spec, r, batch, fused.preset, kernels, notes, calibrated, fused.coverage)

