"""ONNX Runtime's ORT_ENABLE_ALL rules that are not chains after a matrix op nor convolution epilogues
(those: ort_conv.py): QuickGeluFusion and GatherSliceToSplitFusion. Each is a `Rule` named after the ORT
transformer it mirrors, with that transformer's conditions as its steps' checks
(onnxruntime/core/optimizer/quick_gelu_fusion.cc, gather_slice_fusion.cc)."""

from __future__ import annotations

from .chains import CYCLE
from .context import Context, FusionPass, Rule, Step
from .ort_fold import load_time_value
from .partition import Partition


def _alone(ctx: Context, node: str) -> str | None:
    return ctx.single_use(ctx.graph.by_name[node].outputs[0])


def _alpha(ctx: Context, anchor: str, node: str) -> str | None:
    if not ctx.scalar_operand(node):
        return "no constant scalar operand: not the alpha of x*sigmoid(alpha*x)"
    return _alone(ctx, node)


QUICK_GELU = Rule("QuickGeluFusion", (
    Step("alpha", ops=frozenset({"Mul"}), check=_alpha),
    Step("sigmoid", ops=frozenset({"Sigmoid"}), check=lambda ctx, a, n: _alone(ctx, n)),
    Step("product", ops=frozenset({"Mul"})),
), mirrors="ORT QuickGeluFusion: x*Sigmoid(x) and x*Sigmoid(alpha*x) as one QuickGelu (SiLU/Swish too)")


class QuickGeluPass(FusionPass):
    name = "quick_gelu"
    help = ("x*Sigmoid(x) and x*Sigmoid(alpha*x) (SiLU, Swish, QuickGelu) as one kernel: ORT's "
            "QuickGeluFusion")
    rules = (QUICK_GELU,)

    def apply(self, ctx: Context, part: Partition) -> None:
        rule = QUICK_GELU
        alpha, sigmoid, product = rule.steps
        for n in ctx.matching(sigmoid):
            if not ctx.real(n.name):
                continue
            if reason := sigmoid.refuses(ctx, n.name, n.name):
                self.reject(rule, n.name, reason)
                continue
            x = n.inputs[0]
            nodes = [n.name]
            prod = ctx.graph.producer.get(x)
            if (prod is not None and alpha.matches(ctx, prod.name)
                    and alpha.refuses(ctx, n.name, prod.name) is None):
                consts = [t for t in prod.inputs if ctx.constant(t)]
                x = next(t for t in prod.inputs if t not in consts[:1])
                nodes.insert(0, prod.name)
            mul = ctx.readers(n.outputs[0])[0]
            if not product.matches(ctx, mul):
                self.reject(rule, n.name, f"its reader {mul} ({ctx.op(mul)}) is not a Mul")
                continue
            others = [t for t in ctx.graph.by_name[mul].inputs if t != n.outputs[0]]
            if others != [x]:
                self.reject(rule, mul, f"it multiplies the sigmoid by {others[0]!r}, not by its input {x!r}",
                            anchor=n.name)
                continue
            nodes.append(mul)
            gids = {part.group_of[m] for m in nodes}
            if any(len(ctx.real_members(part, g)) > 1 for g in gids) and len(gids) > 1:
                self.reject(rule, n.name, "one of its ops is already fused into another kernel")
            elif self.merge(part, gids, rule.name, n.name, "product", label="QuickGelu") is None:
                self.reject(rule, n.name, CYCLE)


# ORT's GatherSliceToSplitFusion leaves graphs below opset 13 alone (Slice, Split and Squeeze change schema
# there): ShuffleNet's opset-11 channel split stays two Slices.
SLICE_SPLIT_OPSET = 13


def _cut(ctx: Context, node: str, rank: int) -> tuple[int, int, int] | str:
    """(axis, start, end) of a Slice that GatherSliceToSplitFusion takes: one axis named by its axes input,
    step 1, bounds known at load time (literal, or `x.shape[-1] // 2` folded), or why not."""
    n = ctx.graph.by_name[node]
    if ctx.graph.opsets.get("", 0) < SLICE_SPLIT_OPSET:
        return f"opset {ctx.graph.opsets.get('', 0)}: ORT makes Splits of Slices from opset 13 on"
    ins = [*n.inputs[1:5], "", "", ""][:4]
    if not ins[2]:
        return "it has no axes input: ORT reads the axis to split from it"
    vals = [load_time_value(ctx, t) if t else None for t in ins]
    if any(t and v is None for t, v in zip(ins, vals, strict=True)):
        return "its starts, ends, axes or steps are computed at run time"
    starts, ends, axes = (v.reshape(-1).tolist() for v in vals[:3])
    steps = vals[3].reshape(-1).tolist() if vals[3] is not None else [1] * len(starts)
    if len(starts) != 1 or len(ends) != 1 or len(axes) != 1 or steps != [1]:
        return "it cuts more than one axis, or with a step other than 1"
    return axes[0] % rank, int(starts[0]), int(ends[0])


SLICE_SPLIT = Rule("GatherSliceToSplitFusion", (
    Step("piece", ops=frozenset({"Slice"})),
), mirrors="ORT GatherSliceToSplitFusion: Slices that cut one tensor along one axis into adjacent pieces "
           "covering it (rotary embeddings' two halves) as one Split")


class SliceSplitPass(FusionPass):
    # Checked with synthetic graphs against onnxruntime 1.32 (tests/test_fusion_ort_rules.py): two halves,
    # three pieces and any axis fuse, other readers of the tensor or not; pieces that leave a gap do not.
    name = "slice_split"
    help = "Slices that cut one tensor into adjacent pieces along one axis as one Split kernel"
    rules = (SLICE_SPLIT,)

    def apply(self, ctx: Context, part: Partition) -> None:
        rule = SLICE_SPLIT
        by_tensor: dict[str, list[str]] = {}
        for n in ctx.matching(rule.steps[0]):
            if ctx.real(n.name) and n.inputs and len(ctx.real_members(part, part.group_of[n.name])) == 1:
                by_tensor.setdefault(n.inputs[0], []).append(n.name)
        for tensor, slices in by_tensor.items():
            shape = ctx.graph.tensor(tensor).shape
            if len(slices) < 2 or not shape or any(not isinstance(d, int) for d in shape):
                continue
            by_axis: dict[int, list[tuple[int, int, str]]] = {}
            for s in slices:
                cut = _cut(ctx, s, len(shape))
                if isinstance(cut, str):
                    self.reject(rule, s, cut)
                    continue
                axis, start, end = cut
                dim = shape[axis]
                start, end = (max(0, min(v + dim if v < 0 else v, dim)) for v in (start, end))
                by_axis.setdefault(axis, []).append((start, end, s))
            for axis, pieces in by_axis.items():
                if len(pieces) < 2:
                    continue  # one piece along this axis: no Split to make
                pieces.sort()
                bounds = [0] + [e for _, e, _ in pieces]
                if [b for b, _, _ in pieces] != bounds[:-1] or bounds[-1] != shape[axis]:
                    for _, _, s in pieces:
                        self.reject(rule, s, f"the Slices of {tensor!r} along axis {axis} do not cut it into "
                                    "adjacent pieces that cover it")
                    continue
                gids = {part.group_of[s] for _, _, s in pieces}
                if self.merge(part, gids, rule.name, pieces[0][2], "piece", label="Split") is None:
                    self.reject(rule, pieces[0][2], CYCLE)
