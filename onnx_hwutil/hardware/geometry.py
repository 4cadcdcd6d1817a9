"""The matrix work of a node as GEMMs: what discrete units (SM tiles, MXU weight tiles, CPU blocks) see.

Conv is an implicit GEMM per group: M = N*Hout*Wout, N = Cout/g, K = Cin/g*kh*kw. MatMul batches over its
leading dims. An op we have no geometry for becomes one GEMM with the same MACs (M = outputs, N = 1), the
least favourable shape, flagged `approx`.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from ..graph import Graph, Node


@dataclass(frozen=True)
class Gemm:
    batch: int  # independent GEMMs (groups, batch dims, recurrent steps)
    m: int
    n: int
    k: int
    weight_stationary: bool = True  # B is a weight: it can stay in place on a systolic array
    approx: bool = False

    def __post_init__(self):
        # A degenerate dim (a malformed node) still occupies one unit: never zero, never negative.
        for f in ("batch", "m", "n", "k"):
            object.__setattr__(self, f, max(int(getattr(self, f)), 1))

    @property
    def macs(self) -> int:
        return self.batch * self.m * self.n * self.k


_CONV = ("Conv", "ConvInteger", "QLinearConv", "FusedConv", "NhwcConv")
_GEMM = ("Gemm", "QGemm", "FusedGemm")
_MATMUL = ("MatMul", "MatMulInteger", "QLinearMatMul", "FusedMatMul", "MatMulNBits", "MatMulIntegerToFloat",
           "DynamicQuantizeMatMul", "MatMulInteger16")
_RNN_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1, "DynamicQuantizeLSTM": 4}


def _shape(graph: Graph, name: str):
    t = graph.tensor(name)
    return t.shape if t.static else None


def gemm_of(node: Node, graph: Graph, macs: int) -> Gemm | None:
    """The GEMM(s) of a matrix node, or None if it does no MACs."""
    if macs <= 0:
        return None
    op = node.op_type
    out = _shape(graph, node.outputs[0]) if node.outputs and node.outputs[0] else None
    try:
        if op in _CONV:
            w = _shape(graph, node.inputs[3 if op == "QLinearConv" else 1])
            g = int(node.attr("group", 1))
            spatial = prod(out[1:-1]) if op == "NhwcConv" else prod(out[2:])
            return _checked(Gemm(g, out[0] * spatial, w[0] // g, prod(w[1:])), macs)
        if op == "ConvTranspose":  # as the GEMM before col2im: [N*Hin*Win, Cin/g] x [Cin/g, Cout/g*k]
            x, w = _shape(graph, node.inputs[0]), _shape(graph, node.inputs[1])
            g = int(node.attr("group", 1))
            return _checked(Gemm(g, x[0] * prod(x[2:]), w[1] * prod(w[2:]), w[0] // g), macs)
        if op in _GEMM:
            a = _shape(graph, node.inputs[0])
            k = a[0] if node.attr("transA", 0) else a[1]
            b = node.inputs[3 if op == "QGemm" else 1]
            return _checked(Gemm(1, out[0], out[1], k, graph.tensor(b).const), macs)
        if op in _MATMUL:
            a = _shape(graph, node.inputs[0])
            k = a[-2] if node.attr("transA", 0) and len(a) > 1 else a[-1]
            m = out[-2] if len(a) > 1 and len(out) > 1 else 1
            n = out[-1] if len(out) >= 1 and (len(a) == 1 or len(out) > 1 or op == "MatMulNBits") else 1
            b = node.inputs[3 if op == "QLinearMatMul" else 1]
            batch = prod(out) // max(m * n, 1)
            return _checked(Gemm(batch, m, n, k, graph.tensor(b).const), macs)
        if op in _RNN_GATES:  # one GEMM per step and direction: [batch, input + H] x [input + H, gates*H]
            x, w = _shape(graph, node.inputs[0]), _shape(graph, node.inputs[1])
            seq, batch = (x[1], x[0]) if node.attr("layout", 0) else (x[0], x[1])
            gates_h = w[2] if op == "DynamicQuantizeLSTM" else w[1]
            hidden = gates_h // _RNN_GATES[op]
            return _checked(Gemm(seq * w[0], batch, gates_h, x[2] + hidden), macs)
    except (TypeError, ValueError, IndexError, ZeroDivisionError):
        pass  # a shape or attribute we cannot read as a GEMM: the approximation below
    n_out = prod(out) if out else 1
    return Gemm(1, max(n_out, 1), 1, max(macs // max(n_out, 1), 1), False, approx=True)


def _checked(g: Gemm, macs: int) -> Gemm:
    """Geometry must reproduce the counted MACs; otherwise keep M and N and say it is approximate."""
    if g.macs == macs:
        return g
    return Gemm(1, g.m * g.batch, g.n, max(macs // max(g.m * g.batch * g.n, 1), 1), g.weight_stationary,
                approx=True)
