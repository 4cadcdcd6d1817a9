"""One backend per kind of chip: how a fused subgraph's work lands on discrete units.

Each backend answers two questions for one kernel: how long its arithmetic takes on the units it can
actually occupy (and how many that is), and how fast its on-chip hits are served. Everything else (DRAM
time, overhead, energy, the cache window) is common and lives in `mapping`.

Assumptions a datasheet cannot settle are named constants here, each with its reason.
"""

from __future__ import annotations

from math import ceil

import numpy as np

from ..ops import Gemm
from .rates import CALIBRATED_PRECISION, Rates
from .spec import HardwareSpec

# GPU: the thread-block output tile of cuBLAS/CUTLASS tensor-core and SIMT GEMM kernels for large problems;
# one such block per SM at a time (its operand buffers fill most of shared memory).
GPU_TILE_M, GPU_TILE_N = 128, 128
# A product of at most this many rows (a decode step's GEMV-shaped projections, a classifier at batch 1)
# runs on tiles of this many rows: the tensor cores' smallest MMA shape (m16n8k16 on Ampere and Hopper), the
# row count of the small-M kernels cuBLAS and TensorRT-LLM pick. A 128-row tile there would price a
# one-row product as 128.
GPU_TILE_M_MIN = 16
# cuBLAS splits K across blocks when the output has too few tiles to fill the SMs; a K slice under this
# many elements is not worth a block of its own.
GPU_SPLIT_K_MIN = 256
# Elementwise kernels: 256 threads x 4 elements per block.
GPU_ELEMENTS_PER_BLOCK = 1024
# CPU: MLAS-style GEMM blocking; a core gets whole 64x64 output blocks, and no thread is started for
# less than this many FLOPs (thread wake-up costs a few microseconds).
CPU_BLOCK_M, CPU_BLOCK_N = 64, 64
CPU_MIN_FLOPS_PER_THREAD = 200_000
CPU_MIN_ELEMENTS_PER_THREAD = 16_384


class Backend:
    """Shared helpers; subclasses implement `matrix` for their kind of unit."""

    def __init__(self, spec: HardwareSpec, r: Rates, threads: int | None = None):
        self.spec = spec
        self.rates = r
        self.units = spec.units

    def overhead(self) -> float:
        return self.spec.kernel_overhead_s

    def memory_time(self, dram: int, onchip: int) -> float:
        return dram / self.spec.dram_bandwidth + onchip / self.hit_bandwidth()

    def matrix(self, g: Gemm) -> tuple[float, int]:
        raise NotImplementedError

    def vector(self, flops: int, elements: int, per_block: int, int8: bool = False) -> tuple[float, int]:
        """Elementwise work spread over blocks of `per_block` elements, in waves over the units."""
        if flops <= 0 and elements <= 0:
            return 0.0, 1
        blocks = max(ceil(max(elements, 1) / per_block), 1)
        units = min(self.units, blocks)
        waves = ceil(blocks / self.units)
        per_unit = self.vector_rate(elements, int8) / self.units
        return waves * (flops / blocks) / per_unit, units

    def vector_rate(self, elements: int, int8: bool = False) -> float:
        """Non-matrix FLOP/s of the whole chip on a kernel of `elements` outputs (`int8`: of a quantized
        kernel, where a backend has measured one)."""
        return self.rates.vector_ops_per_s

    def compute(self, gemms: list[Gemm], vector_flops: int, elements: int,
                int8: bool = False) -> tuple[float, float, int]:
        """(matrix seconds, vector seconds, units) of one kernel; `int8`: a quantized one."""
        t, units = 0.0, 0
        for g in gemms:  # the ops of one fused kernel run one after another inside it
            tg, ug = self.matrix(g)
            t += tg * g.serial
            units = max(units, ug)
        tv, uv = self.vector(vector_flops, elements, self.vector_block, int8)
        if gemms and units > uv and vector_flops:
            # A fused kernel's vector work runs on the units its GEMM occupies, not only on as many as its
            # outputs fill: MatMulNBits scales and shifts every weight of a one-token product on them all.
            tv = min(tv, vector_flops / (self.vector_rate(elements, int8) * units / self.units))
        return t, tv, max(units, uv if (vector_flops or not gemms) else 1, 1)

    vector_block = 1024

    def hit_bandwidth(self) -> float:
        raise NotImplementedError

    def refetch_bytes(self, g: Gemm, elem_bytes: float) -> int:
        """Extra DRAM traffic when operands do not fit where the units keep them (default: none)."""
        return 0


class GpuBackend(Backend):
    """Implicit GEMM: output tiles per thread block, blocks in waves over the SMs (wave quantization)."""

    vector_block = GPU_ELEMENTS_PER_BLOCK

    def matrix(self, g: Gemm) -> tuple[float, int]:
        tile_m = GPU_TILE_M_MIN if g.m <= GPU_TILE_M_MIN else GPU_TILE_M
        tiles = g.batch * ceil(g.m / tile_m) * ceil(g.n / GPU_TILE_N)
        split = 1
        if tiles < self.units:
            split = max(1, min(self.units // tiles, g.k // GPU_SPLIT_K_MIN))
        blocks = tiles * split
        waves = ceil(blocks / self.units)
        block_flops = 2 * tile_m * GPU_TILE_N * ceil(g.k / split)  # a padded tile costs a full one
        per_sm = self.rates.matrix_ops_per_s / self.units
        return waves * block_flops / per_sm, min(blocks, self.units)

    def hit_bandwidth(self) -> float:
        return self.spec.backend.l2_bandwidth_bytes_per_s


class TpuBackend(Backend):
    """Weight-stationary 128x128 MXUs: K and N padded to the array, fill and drain per weight tile."""

    def __init__(self, spec, r, threads=None):
        super().__init__(spec, r)
        self.rows, self.cols = spec.backend.mxu_rows, spec.backend.mxu_cols
        # Cycles per MAC of each cell at this precision, from the peak: 1 for bf16 on every TPU, 1/2 where
        # int8 runs at twice the rate (v5e onwards), 6 for fp32 emulated in six bf16 passes. Taken as it is
        # (275 TFLOPS against a 275.3 of cells x clock gives 1.0009), so no kernel beats the cited peak.
        self.slowdown = 2 * self.units * self.rows * self.cols * spec.clock_hz / r.matrix_ops_per_s

    def fold_cycles(self, m: int) -> int:
        """One weight tile: load it (rows cycles), stream m rows in (skewed over rows), drain over cols."""
        return 2 * self.rows + self.cols + m - 2

    def mxu_cycles(self, g: Gemm) -> tuple[int, int]:
        """(cycles of the busiest MXU, MXUs used) for one GEMM."""
        folds = g.batch * ceil(g.k / self.rows) * ceil(g.n / self.cols)
        if folds >= self.units:
            return ceil(folds / self.units) * self.fold_cycles(g.m), self.units
        split = max(1, min(self.units // folds, ceil(g.m / self.rows)))  # same weights, rows split
        return self.fold_cycles(ceil(g.m / split)), folds * split

    def matrix(self, g: Gemm) -> tuple[float, int]:
        cycles, units = self.mxu_cycles(g)
        t = cycles * self.slowdown / self.spec.clock_hz
        if not g.weight_stationary:
            # Neither operand is a weight (attention's Q K^T and P V). With a row or two per product (a
            # decode step's one query per head) every product would load its own tile into the array for
            # almost no work; such products run on the vector units instead, where that is faster.
            tv = 2 * g.batch * g.m * g.n * g.k / self.rates.vector_ops_per_s
            if tv < t:
                return tv, self.units
        return t, units

    def hit_bandwidth(self) -> float:
        return self.spec.backend.cmem_bandwidth_bytes_per_s


class KpuBackend(Backend):
    """A tile array: outputs split over tiles of PEs; each tile keeps its operands in a local scratchpad,
    and all tiles share one DRAM link."""

    def __init__(self, spec, r, threads=None):
        super().__init__(spec, r)
        self.pes = spec.backend.pes_per_tile
        self.scratchpad = spec.backend.scratchpad_bytes_per_tile

    def _units(self, g: Gemm) -> int:
        return min(self.units, ceil(g.batch * g.m * g.n / self.pes))

    def matrix(self, g: Gemm) -> tuple[float, int]:
        units = self._units(g)
        outputs_per_tile = ceil(g.batch * g.m * g.n / units)
        rounds = ceil(outputs_per_tile / self.pes)  # each PE produces one output at a time
        per_tile = self.rates.matrix_ops_per_s / self.units
        return rounds * self.pes * g.k * 2 / per_tile, units

    def refetch_bytes(self, g: Gemm, elem_bytes: float) -> int:
        """Output channels are split over tiles, so each tile holds its slice of the weights and streams
        the inputs past it. A slice larger than half the scratchpad (the other half double-buffers inputs)
        is processed in passes, and every extra pass streams the inputs from DRAM again."""
        units = self._units(g)
        slice_bytes = g.k * ceil(g.n / max(units // max(g.batch, 1), 1)) * elem_bytes
        passes = ceil(slice_bytes / (self.scratchpad / 2))
        return int((passes - 1) * g.batch * g.m * g.k * elem_bytes) if passes > 1 else 0

    def hit_bandwidth(self) -> float:
        return self.spec.backend.noc_bandwidth_bytes_per_s


class CpuBackend(Backend):
    """Cores x SIMD lanes x FMA units (AMX where the spec has it); work split over cores in whole blocks,
    with a minimum amount of work per thread. With `calibrate`'s tables (fp32), measured rates replace the
    peak: a GEMM runs at the rate measured for the nearest measured shape, a depthwise convolution at the
    rate measured for its size (an int8 one, QLinearConv/QLinearMatMul, at the int8 rate measured for the
    nearest shape), memory traffic at the streaming rate measured for its working set, non-matrix
    work at the rate measured on sigmoid, erf, softmax and layer norm, and each op costs the measured dispatch
    time."""

    vector_block = CPU_MIN_ELEMENTS_PER_THREAD

    def __init__(self, spec, r, threads=None):
        super().__init__(spec, r)
        self.units = max(1, min(threads or spec.units, spec.units))
        tables = (spec.calibration or {}).get("threads", {})
        usable = [n for n in tables if n <= self.units]
        self.cal = tables[max(usable)] if usable and r.precision == CALIBRATED_PRECISION else None

    def matrix(self, g: Gemm) -> tuple[float, int]:
        blocks = g.batch * ceil(g.m / CPU_BLOCK_M) * ceil(g.n / CPU_BLOCK_N)
        flops = 2 * g.macs // g.serial  # one call; compute() repeats it serial times
        units = max(1, min(self.units, blocks, ceil(flops / CPU_MIN_FLOPS_PER_THREAD)))
        if self.cal is not None:
            depthwise = g.n == 1 and g.batch > 1
            gemm = (self.cal.get("gemm_int8") if g.int8 else None) or self.cal["gemm"]  # none: fp32's
            rate = _loglog(self.cal["depthwise"], flops) if depthwise else _nearest(gemm, g)
            return flops / rate, units
        per_core = self.rates.matrix_ops_per_s / self.units
        # a core's share is whole blocks; the last, partial block costs its real work
        share = ceil(blocks / units) / blocks
        return flops * share / per_core, units

    def memory_time(self, dram: int, onchip: int) -> float:
        if self.cal is None:
            return super().memory_time(dram, onchip)
        total = dram + onchip
        return total / _loglog(self.cal["elementwise"], total) if total else 0.0

    def overhead(self) -> float:
        return self.cal["dispatch_s"] if self.cal is not None else self.spec.kernel_overhead_s

    def vector_rate(self, elements: int, int8: bool = False) -> float:
        # measured on transcendental and row-reduction ops, and on their quantized forms for a quantized
        # kernel (calibrations before a table lack it: the fp32 one, else the peak)
        table = (self.cal.get("vector_int8") if int8 else None) or self.cal.get("vector") \
            if self.cal is not None else None
        if table:
            return _loglog(table, elements)
        return super().vector_rate(elements)

    def hit_bandwidth(self) -> float:
        return self.spec.backend.l3_bandwidth_bytes_per_s


def _loglog(points, x: float) -> float:
    """Rate at size x, interpolated in log-log between measured (size, rate) points, flat outside."""
    xs = np.log([p[0] for p in points])
    ys = np.log([p[1] for p in points])
    return float(np.exp(np.interp(np.log(max(x, 1.0)), xs, ys)))


def _nearest(points, g: Gemm) -> float:
    """Rate of the measured GEMMs nearest in (log M, log N, log K), inverse-distance weighted (two)."""
    target = np.log2([max(g.batch * g.m, 1), max(g.n, 1), max(g.k, 1)])
    pts = np.array([p[:3] for p in points], dtype=float)
    d = np.linalg.norm(np.log2(pts) - target, axis=1)
    order = np.argsort(d)[:2]
    if d[order[0]] < 1e-9:
        return float(points[order[0]][3])
    w = 1.0 / d[order]
    return float(np.exp(np.sum(w * np.log([points[i][3] for i in order])) / np.sum(w)))


BACKENDS = {"gpu": GpuBackend, "tpu": TpuBackend, "kpu": KpuBackend, "cpu": CpuBackend}
