"""ONNX Runtime's fusions of a dynamically quantized MatMul (onnxruntime.quantization.quantize_dynamic):

    DynamicQuantizeLinear(x) -> MatMulInteger(x_q, W_q) -> Cast -> Mul(., x_scale * W_scale) (-> Add bias)

MatMulIntegerToFloatFusion (onnxruntime/core/optimizer/matmul_integer_to_float.cc) makes one
MatMulIntegerToFloat of the MatMulInteger, the Cast, the scale product and the Mul (and a constant bias
Add); DynamicQuantizeMatMulFusion (dynamic_quantize_matmul_fusion.cc) then takes the DynamicQuantizeLinear
in too, where the quantized input goes to that one kernel alone (both CPU transformers, checked against
onnxruntime 1.32 in tests/test_fusion_ort_dynamic_quant.py). Nothing is folded away: the kernel still
quantizes its input, multiplies, rescales and adds, so every node's work stays in it.
"""

from __future__ import annotations

from .chains import CYCLE
from .context import Context, FusionPass, Rule, Step
from .partition import Partition

DQL = "DynamicQuantizeLinear"


def _one_edge(ctx: Context, node: str) -> bool:
    """ORT's CheckOutputEdges(node, 1): one reader of its one output, which is no graph output."""
    outs = [t for t in ctx.graph.by_name[node].outputs if t]
    return (len(outs) == 1 and outs[0] not in ctx.outputs
            and _edges(ctx, node) == 1)


def _edges(ctx: Context, node: str) -> int:
    """How many node inputs read the node's outputs (a node reading one twice counts twice, as in ORT)."""
    return sum(sum(1 for i in ctx.graph.by_name[r].inputs if i == t)
               for t in ctx.graph.by_name[node].outputs if t for r in set(ctx.readers(t)))


def _parent(ctx: Context, node: str, op: str):
    """ORT's FirstParentByType: the first input's producer of that op."""
    for t in ctx.graph.by_name[node].inputs:
        prod = ctx.graph.producer.get(t) if t else None
        if prod is not None and prod.op_type == op:
            return prod
    return None


def _bias(ctx: Context, mul: str, node: str) -> str | None:
    # the bias is the Add's other operand (either side: checked with a session), a constant of shape
    # [..., 1, N] with N > 1 (ORT's CheckBiasShape)
    n = ctx.graph.by_name[node]
    others = [t for t in n.inputs if t not in ctx.graph.by_name[mul].outputs]
    if len(n.inputs) != 2 or len(others) != 1 or not ctx.constant(others[0]):
        return "its other operand is not a constant: not a bias"
    shape = ctx.graph.tensor(others[0]).shape
    if not shape or any(d != 1 for d in shape[:-1]) or not isinstance(shape[-1], int) or shape[-1] <= 1:
        return f"its constant of shape {list(shape or ())} is not a bias [..., 1, N] with N > 1"
    return None


def _lone_quantize(ctx: Context, mul: str, node: str) -> str | None:
    # its three outputs (the quantized input, its scale and zero point) read once each, by the one kernel:
    # ORT's CheckOutputEdges(DynamicQuantizeLinear, 3). onnxruntime 1.32 takes run-time weights, scales and
    # zero points too (checked: the constant checks of older versions are gone)
    if _edges(ctx, node) != 3 or any(t in ctx.outputs for t in ctx.graph.by_name[node].outputs):
        return ("its outputs go elsewhere too (another MatMulInteger shares the quantized input, or a graph "
                "output)")
    return None


MATMUL_INTEGER_TO_FLOAT = Rule("MatMulIntegerToFloatFusion", (
    Step("matmul_integer", ops=frozenset({"MatMulInteger"})),
    Step("cast", ops=frozenset({"Cast"})),
    Step("scale", ops=frozenset({"Mul"})),  # the Mul of the input's and the weights' scales
    Step("rescale", ops=frozenset({"Mul"})),
    Step("bias", ops=frozenset({"Add"}), check=_bias),
), mirrors="ORT MatMulIntegerToFloatFusion: MatMulInteger -> Cast -> Mul(scale product) (-> constant bias "
           "Add) as one MatMulIntegerToFloat")

DYNAMIC_QUANTIZE_MATMUL = Rule("DynamicQuantizeMatMulFusion", (
    Step("quantize", ops=frozenset({DQL}), check=_lone_quantize),
    Step("matmul", ops=frozenset({"Mul"})),
), mirrors="ORT DynamicQuantizeMatMulFusion: DynamicQuantizeLinear -> MatMulIntegerToFloat, the quantized "
           "input read by that kernel alone, as one DynamicQuantizeMatMul")


class DynamicQuantPass(FusionPass):
    name = "dynamic_quant"
    help = ("a dynamically quantized MatMul (DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul (-> bias "
            "Add)) as one MatMulIntegerToFloat or DynamicQuantizeMatMul kernel, as ONNX Runtime fuses it")
    rules = (MATMUL_INTEGER_TO_FLOAT, DYNAMIC_QUANTIZE_MATMUL)

    def apply(self, ctx: Context, part: Partition) -> None:
        for mul in ctx.matching(MATMUL_INTEGER_TO_FLOAT.steps[3]):
            nodes = self._unit(ctx, part, mul.name)  # refusals recorded every round, for `explain`
            if nodes is None:
                continue
            if part.group_of[nodes[0]] != part.group_of[mul.name] and self._merge(
                    ctx, part, nodes, MATMUL_INTEGER_TO_FLOAT, mul.name, "MatMulIntegerToFloat") is None:
                continue
            self._take_quantize(ctx, part, mul.name, nodes[0])

    def _unit(self, ctx: Context, part: Partition, mul: str) -> list[str] | None:
        """MatMulInteger, Cast, scale product, Mul (and bias Add) as ORT matches them from the Mul; None
        where the Mul is no such (or ORT refuses it, recorded)."""
        rule = MATMUL_INTEGER_TO_FLOAT
        cast = _parent(ctx, mul, "Cast")
        mmi = _parent(ctx, cast.name, "MatMulInteger") if cast is not None else None
        scale = _parent(ctx, mul, "Mul")
        if mmi is None or scale is None:
            return None  # not the pattern: no candidate
        lone = next((n for n in (cast.name, mmi.name, scale.name) if not _one_edge(ctx, n)), None)
        if lone is not None:
            self.reject(rule, lone, "its result has other readers, or is a graph output", anchor=mul)
            return None
        nodes = [mmi.name, cast.name, scale.name, mul]
        readers = ctx.readers(ctx.graph.by_name[mul].outputs[0])
        if _one_edge(ctx, mul) and ctx.op(readers[0]) == "Add":
            if (reason := rule.steps[4].refuses(ctx, mul, readers[0])) is None:
                nodes.append(readers[0])
            else:
                self.reject(rule, readers[0], f"bias: {reason}", anchor=mul)
        return nodes

    def _take_quantize(self, ctx: Context, part: Partition, mul: str, mmi: str) -> None:
        rule = DYNAMIC_QUANTIZE_MATMUL
        dql = _parent(ctx, mmi, DQL) or _parent(ctx, _parent(ctx, mul, "Mul").name, DQL)
        if dql is None or part.group_of[dql.name] == part.group_of[mul]:
            return  # the input was quantized otherwise (MatMulIntegerToFloat stays), or taken already
        if reason := rule.steps[0].refuses(ctx, mul, dql.name):
            self.reject(rule, dql.name, reason, anchor=mul)
            return
        self._merge(ctx, part, [dql.name, mul], rule, mul, "DynamicQuantizeMatMul")

    def _merge(self, ctx: Context, part: Partition, nodes: list[str], rule: Rule, anchor: str,
               label: str) -> int | None:
        gids = {part.group_of[n] for n in nodes}
        if any(len(ctx.real_members(part, g)) > 1 for g in gids - {part.group_of[anchor]}):
            self.reject(rule, anchor, "one of its nodes is already fused into another kernel")
            return None
        gid = self.merge(part, gids, rule.name, anchor, rule.steps[-1].name, label=label)
        if gid is None:
            self.reject(rule, anchor, CYCLE)
        return gid
