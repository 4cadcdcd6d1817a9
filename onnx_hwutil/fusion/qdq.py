"""ONNX Runtime's QDQ node units: DequantizeLinear -> op -> QuantizeLinear run as one quantized kernel.

Mirrors ORT's QDQSelectorActionTransformer (onnxruntime/core/optimizer/qdq_transformer/selectors_actions/
qdq_selectors.cc, qdq_actions.cc): a target op whose quantized inputs all come from DequantizeLinear nodes and
whose every reader is a QuantizeLinear (its result no graph output) becomes QLinearConv, QLinearMatMul,
QLinearAdd, QLinearMul, QLinearSigmoid, ... ; for the ops that only move data (MaxPool, Transpose, Resize,
...) the DQ and Q are dropped and the op runs on the quantized tensor. A DQ that several node units read is
duplicated by ORT (EnsureUniqueDQForNodeUnit): here it joins the first of them, the others read its result.
"""

from __future__ import annotations

from .chains import CYCLE
from .context import Context, FusionPass, Rule, Step
from .partition import Partition

DQ, Q = "DequantizeLinear", "QuantizeLinear"
# Target op -> the inputs that must come from a DQ (None: every input).
QLINEAR: dict[str, tuple[int, ...] | None] = {
    "Conv": (0, 1), "MatMul": (0, 1), "Gemm": (0, 1), "Add": (0, 1), "Mul": (0, 1), "Sigmoid": (0,),
    "LeakyRelu": (0,), "AveragePool": (0,), "GlobalAveragePool": (0,), "Concat": None, "Softmax": (0,),
    "ConvTranspose": (0, 1), "Where": (1, 2),
}
DATA_MOVEMENT = frozenset({"MaxPool", "Transpose", "Reshape", "Resize", "Gather", "Slice", "Squeeze",
                           "Unsqueeze", "Flatten", "Split", "Expand", "Tile", "DepthToSpace",
                           "SpaceToDepth"})


def _readers(ctx: Context, tensor: str) -> list[str]:
    return [c.name for c in ctx.graph.consumers.get(tensor, ())]


def _node_unit(ctx: Context, anchor: str, node: str) -> str | None:
    n = ctx.graph.by_name[node]
    wanted = QLINEAR.get(n.op_type, (0,))
    idx = range(len(n.inputs)) if wanted is None else wanted
    for i in idx:
        t = n.inputs[i] if i < len(n.inputs) else ""
        prod = ctx.graph.producer.get(t) if t else None
        if prod is None or prod.op_type != DQ:
            return f"its input {i} {t!r} does not come from a DequantizeLinear"
    out = n.outputs[0]
    if out in ctx.outputs:
        return f"its result {out!r} is a graph output"
    readers = _readers(ctx, out)
    if not readers or any(ctx.op(r) != Q for r in readers):
        odd = next((r for r in readers if ctx.op(r) != Q), None)
        return f"its reader {odd} ({ctx.op(odd)}) is not a QuantizeLinear" if odd else "nothing reads it"
    return None


QDQ = Rule("QDQSelectorActionTransformer", (
    Step("dequantize", ops=frozenset({DQ}), at_most=8),
    Step("target", ops=frozenset(QLINEAR) | DATA_MOVEMENT, check=_node_unit),
    Step("quantize", ops=frozenset({Q}), at_most=8),
), mirrors="ORT QDQ node units (QDQSelectorActionTransformer): DQ -> op -> Q as one QLinear kernel")


class QdqPass(FusionPass):
    name = "qdq"
    help = ("DequantizeLinear -> op -> QuantizeLinear as one quantized kernel (QLinearConv, QLinearMatMul, "
            "QLinearAdd, ...), the DQ/Q around data-movement ops dropped: ORT's QDQ node units")
    rules = (QDQ,)

    def apply(self, ctx: Context, part: Partition) -> None:
        rule = QDQ
        target = rule.steps[1]
        dequantized = {o for n in ctx.graph.nodes if n.op_type == DQ for o in n.outputs if o}
        for n in ctx.matching(target):
            if n.op_type in (DQ, Q) or not ctx.real(n.name):
                continue
            if dequantized.isdisjoint(n.inputs):
                self.reject(rule, n.name, "no input comes from a DequantizeLinear: a float op")
                continue
            if reason := target.refuses(ctx, n.name, n.name):
                self.reject(rule, n.name, reason)
                continue
            gid = part.group_of[n.name]
            gids = {gid}
            for t in n.inputs:
                prod = ctx.graph.producer.get(t) if t else None
                if prod is not None and prod.op_type == DQ and prod.name not in ctx.static:
                    pg = part.group_of[prod.name]
                    if len(ctx.real_members(part, pg)) == 1 or pg == gid:
                        gids.add(pg)  # a DQ another unit took already: ORT gives this one its own copy
            gids |= {part.group_of[r] for r in _readers(ctx, n.outputs[0])}
            label = n.op_type if n.op_type in DATA_MOVEMENT else "QLinear" + n.op_type
            if any(g != gid and len(ctx.real_members(part, g)) > 1 and not self._unit(ctx, part, g)
                   for g in gids):
                self.reject(rule, n.name, "a DQ or Q of it is already fused into another kernel")
            elif self.merge(part, gids, rule.name, n.name, "target", label=label) is None:
                self.reject(rule, n.name, CYCLE)

    @staticmethod
    def _unit(ctx: Context, part: Partition, gid: int) -> bool:
        """Is the group only Q/DQ nodes (a DQ that another unit's Q feeds through is no kernel of its own)?"""
        return all(ctx.op(m) in (DQ, Q) for m in ctx.real_members(part, gid))
