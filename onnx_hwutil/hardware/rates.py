"""What a chip can do at one precision: matrix and vector rates, energy per op, or an error.

Matrix work runs on the matrix units at that precision; where a chip has none for it, on its vector units
(a GPU's CUDA cores for fp32), or by the emulation its spec states (TPU fp32 as bf16 passes). A precision
the chip cannot run at all is an error naming those it has: never another precision's peak in disguise.
Non-matrix work runs on the vector units; a precision without its own vector rate uses the fp32 one,
which the result notes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import HwUtilError
from .spec import HardwareSpec


@dataclass(frozen=True)
class Rates:
    precision: str
    matrix_ops_per_s: float  # whole chip
    vector_ops_per_s: float
    matrix_j_per_op: float
    vector_j_per_op: float
    matrix_units: str  # "matrix", "vector" or "emulated via bf16 x6"
    notes: tuple[str, ...] = ()

    @property
    def peak_ops_per_s(self) -> float:
        """The chip's peak for this precision: the figure utilization is measured against."""
        return max(self.matrix_ops_per_s, self.vector_ops_per_s)


def rates(spec: HardwareSpec, precision: str) -> Rates:
    notes: list[str] = []
    j = spec.j_per_op
    if precision in spec.peak_ops_per_s:
        matrix, mj, how = spec.peak_ops_per_s[precision], j[precision], "matrix"
    elif precision in spec.emulated:
        via, slowdown = spec.emulated[precision]
        matrix, mj = spec.peak_ops_per_s[via] / slowdown, j[via] * slowdown
        how = f"emulated via {via} x{slowdown:g}"
        notes.append(f"{spec.name}: {precision} matrix work is emulated with {via} ({slowdown:g} passes)")
    elif precision in spec.vector_ops_per_s:
        matrix, how = spec.vector_ops_per_s[precision], "vector"
        mj = j.get(precision, j.get("fp32"))
        notes.append(f"{spec.name}: no {precision} matrix units; matrix work runs on the vector units")
    else:
        raise HwUtilError(f"{spec.name} cannot run {precision}; it runs: {', '.join(spec.precisions)}")
    if precision in spec.vector_ops_per_s:
        vector = spec.vector_ops_per_s[precision]
    else:
        vector = spec.vector_ops_per_s["fp32"]
        notes.append(f"{spec.name}: non-matrix {precision} work priced at the fp32 vector rate")
    if precision in spec.vector_ops_per_s and precision in spec.vector_j_per_op:
        vj = spec.vector_j_per_op[precision]  # CUDA cores beside tensor cores: their own energy per op
    elif precision in spec.vector_ops_per_s and precision in j:
        vj = j[precision]
    else:  # the fp32 vector units' energy
        vj = spec.vector_j_per_op.get("fp32", j.get("fp32", mj))
    if mj is None:
        raise HwUtilError(f"{spec.path}: field 'energy.j_per_op.{precision}': missing")
    return Rates(precision, matrix, vector, mj, vj if vj is not None else mj, how, tuple(notes))


# `calibrate` times onnxruntime's fp32 CPU kernels: its tables describe that precision and no other.
CALIBRATED_PRECISION = "fp32"


def default_precision(spec: HardwareSpec) -> str:
    """`auto`: the precision a calibrated spec measured; otherwise the chip's 16-bit float matrix precision
    (its usual inference choice), else int8, else fp32."""
    if spec.calibration:
        return CALIBRATED_PRECISION
    for p in ("bf16", "fp16", "int8"):
        if p in spec.peak_ops_per_s:
            return p
    return "fp32"
