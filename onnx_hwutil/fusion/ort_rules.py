"""ONNX Runtime's ORT_ENABLE_ALL rules that are not chains after a matrix op: QuickGeluFusion, the NCHWc
transformer's folding of a residual Add and its Relu, or of x * HardSigmoid(x), into a convolution, and
GatherSliceToSplitFusion. Each
is a `Rule` named after the ORT transformer it mirrors, with that transformer's conditions as its steps'
checks (onnxruntime/core/optimizer/quick_gelu_fusion.cc, nchwc_transformer.cc, gather_slice_fusion.cc)."""

from __future__ import annotations

import numpy as np
from onnx import helper

from ..shape_folding import evaluate
from .chains import CYCLE, _clip_bounds, folded_source, kernel_output
from .context import Context, FusionPass, Rule, Step
from .kinds import load_time
from .partition import Partition

# The NCHWc layout's conditions, as onnxruntime 1.32 applies them on this project's AVX-512 machine (checked
# with synthetic convolutions in tests/test_fusion_ort_rules.py): a conv with fewer than NCHWC_BLOCK input
# channels reads the plain NCHW tensor; otherwise its channels (and a depthwise conv's, and a pool's) must be
# multiples of NCHWC_ALIGN; output channels are padded up to the block.
NCHWC_BLOCK = 16
NCHWC_ALIGN = 4
POOLS = frozenset({"MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool"})


def _readers(ctx: Context, tensor: str) -> list[str]:
    return [c.name for c in ctx.graph.consumers.get(tensor, ())]


def _single_use(ctx: Context, node: str) -> str | None:
    out = ctx.graph.by_name[node].outputs[0]
    if out in ctx.outputs:
        return f"its result {out!r} is a graph output"
    readers = _readers(ctx, out)
    return None if len(readers) == 1 else f"its result has {len(readers)} readers, not one"


def _single_use_kernel(ctx: Context, part: Partition, node: str) -> str | None:
    """`_single_use` of what the node's kernel writes (after the BatchNormalization, Mul or Add folded into a
    Conv)."""
    out = kernel_output(ctx, part, node)
    if out in ctx.outputs:
        return f"its result {out!r} is a graph output"
    readers = _readers(ctx, out)
    return None if len(readers) == 1 else f"its result has {len(readers)} readers, not one"


def _alpha(ctx: Context, anchor: str, node: str) -> str | None:
    if not ctx.scalar_operand(node):
        return "no constant scalar operand: not the alpha of x*sigmoid(alpha*x)"
    return _single_use(ctx, node)


QUICK_GELU = Rule("QuickGeluFusion", (
    Step("alpha", ops=frozenset({"Mul"}), check=_alpha),
    Step("sigmoid", ops=frozenset({"Sigmoid"}), check=lambda ctx, a, n: _single_use(ctx, n)),
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
            mul = _readers(ctx, n.outputs[0])[0]
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


def nchwc_conv(ctx: Context, conv: str) -> str | None:
    """Does the NCHWc transformer rewrite this Conv (None), or why not."""
    n = ctx.graph.by_name[conv]
    if n.op_type != "Conv":
        return f"a {n.op_type}, not a Conv"
    w = ctx.graph.tensor(n.inputs[1])
    if not w.const or w.shape is None or len(w.shape) != 4 or w.dtype != 1:
        return "its weights are not a constant 4-D float32 initializer"
    if len(n.inputs) > 2 and n.inputs[2] and not ctx.constant(n.inputs[2]):
        return "its bias is computed at run time"
    group = n.attr("group") or 1
    cout, cin = w.shape[0], w.shape[1]  # cin: input channels per group
    a = NCHWC_ALIGN
    if group > 1:
        if cout % a:
            return f"a grouped conv with {cout} output channels, not a multiple of {a}"
        depthwise = cin == 1 and cout == group
        if not depthwise and (cin % a or cout % group or (cout // group) % a):
            return f"a grouped conv whose channels per group are not multiples of {a}"
    elif cin >= NCHWC_BLOCK and cin % a:
        return f"{cin} input channels: neither under {NCHWC_BLOCK} nor a multiple of {a}"
    return None


def _nchwc_tensor(ctx: Context, part: Partition, tensor: str, memo: dict[str, bool]) -> bool:
    """Is the tensor in the blocked layout when the Add reads it (produced by an NCHWc conv or pool, or by
    an Add, Concat or Relu whose inputs all are)? A node folded into a conv (BatchNormalization, a
    per-channel Mul or Add) is gone by then: its result is the conv's."""
    if tensor in memo:
        return memo[tensor]
    memo[tensor] = False
    prod = folded_source(ctx, part, tensor)
    ok = False
    if prod is not None and (prod.outputs[0] == tensor or kernel_output(ctx, part, prod.name) == tensor):
        op = prod.op_type
        if op == "Conv":
            ok = nchwc_conv(ctx, prod.name) is None
        elif op in POOLS:
            shape = ctx.graph.tensor(prod.inputs[0]).shape
            ok = bool(shape) and len(shape) == 4 and shape[1] is not None and shape[1] % NCHWC_ALIGN == 0
        elif op in ("Add", "Sum", "Relu", "BatchNormalization") or (op == "Concat"
                                                                   and prod.attr("axis") == 1):
            ins = prod.inputs[:1] if op == "BatchNormalization" else prod.inputs
            ok = all(_nchwc_tensor(ctx, part, t, memo) for t in ins if t)
    memo[tensor] = ok
    return ok


def _conv_of(ctx: Context, part: Partition, gid: int) -> str | None:
    """The Conv a group is, if it is a Conv alone (BatchNormalization folded in): no activation yet."""
    real = ctx.real_members(part, gid)
    return real[0] if len(real) == 1 and ctx.op(real[0]) == "Conv" else None


NCHWC_ADD = Rule("NchwcTransformer", (
    Step("conv", ops=frozenset({"Conv"}), check=lambda ctx, a, n: nchwc_conv(ctx, n)),
    Step("sum", ops=frozenset({"Add", "Sum"})),
    Step("relu", ops=frozenset({"Relu"})),
), mirrors="ORT NchwcTransformer (ORT_ENABLE_ALL, CPU only): a residual Add whose operands are both in the "
           "blocked layout accumulates into the single-use Conv that produced one of them, and a Relu after "
           "it becomes that Conv's activation")


def _hard_sigmoid(ctx: Context, anchor: str, node: str) -> str | None:
    n = ctx.graph.by_name[node]
    alpha, beta = n.attr("alpha", 0.2), n.attr("beta", 0.5)
    if abs(alpha - 1 / 6) > 1e-6 or abs(beta - 0.5) > 1e-6:
        return f"alpha {alpha:g} and beta {beta:g}: not HardSwish's 1/6 and 0.5"
    return None


NCHWC_HARD_SWISH = Rule("NchwcTransformer", (
    Step("conv", ops=frozenset({"Conv"}), check=lambda ctx, a, n: nchwc_conv(ctx, n)),
    Step("hard_sigmoid", ops=frozenset({"HardSigmoid"}), check=_hard_sigmoid),
    Step("product", ops=frozenset({"Mul"})),
), mirrors="ORT NchwcTransformer: x * HardSigmoid(x) (alpha 1/6, beta 0.5) on an NCHWc Conv's output, read "
           "by a conv or pool that stays in the blocked layout, becomes the Conv's HardSwish activation")


class NchwcPass(FusionPass):
    # ORT registers the transformer only where MLAS has an NCHWc block (MlasNchwcGetBlockSize() > 1:
    # x86 with AVX2 or AVX-512); a CPU without one (`--disable nchwc`) leaves the Add and the Relu to
    # ConvAddActivationFusion (the conv_add_act pass: a biased Conv only); ORT_ENABLE_EXTENDED runs neither
    # (`--disable nchwc --disable conv_add_act`).
    name = "nchwc"
    help = ("CPU only, at ORT_ENABLE_ALL: ORT's NCHWc transformer folds a residual Add (both operands from "
            "NCHWc convolutions or pools) into the single-use Conv that feeds it, then a Relu after it, and "
            "x * HardSigmoid(x) on a Conv's output into that Conv (HardSwish)")
    rules = (NCHWC_ADD, NCHWC_HARD_SWISH)

    def apply(self, ctx: Context, part: Partition) -> None:
        ctx.memo[NCHWC_ON] = True  # ConvAddActivationFusion, after this pass, leaves its convs alone
        self._hard_swish(ctx, part)
        rule = NCHWC_ADD
        memo: dict[str, bool] = {}
        for n in ctx.matching(rule.steps[1]):
            if len(n.inputs) != 2 or not ctx.real(n.name):
                continue
            shapes = [ctx.graph.tensor(t).shape for t in n.inputs]
            if shapes[0] != shapes[1] or not shapes[0] or len(shapes[0]) != 4:
                continue  # a broadcast (a bias, a scale): not the NCHWc Sum
            if not all(_nchwc_tensor(ctx, part, t, memo) for t in n.inputs):
                self.reject(rule, n.name, "an operand is not in the blocked layout (not from an NCHWc conv, "
                            "pool, Add or Relu)")
                continue
            gid = part.group_of[n.name]
            groups = [part.group_of[ctx.graph.producer[t].name] for t in n.inputs]
            if gid in groups:
                continue  # folded into its Conv already
            target = next((g for g in groups if (conv := _conv_of(ctx, part, g)) is not None
                           and _single_use_kernel(ctx, part, conv) is None), None)
            if target is None:
                self.reject(rule, n.name, "neither operand comes from a Conv of its own (no activation fused "
                            "yet) that nothing else reads")
                continue
            merged = self.merge(part, {gid, target}, rule.name, n.name, "sum")
            if merged is None:
                self.reject(rule, n.name, CYCLE)
                continue
            readers = _readers(ctx, n.outputs[0])
            if (len(readers) == 1 and n.outputs[0] not in ctx.outputs
                    and rule.steps[2].matches(ctx, readers[0])
                    and len(ctx.real_members(part, part.group_of[readers[0]])) == 1):
                self.merge(part, {merged, part.group_of[readers[0]]}, rule.name, n.name, "relu")


    def _hard_swish(self, ctx: Context, part: Partition) -> None:
        rule = NCHWC_HARD_SWISH
        conv_step, hs_step, mul_step = rule.steps
        for h in ctx.matching(hs_step):
            prod = folded_source(ctx, part, h.inputs[0]) if h.inputs else None
            if prod is None or not conv_step.matches(ctx, prod.name) \
                    or _conv_of(ctx, part, part.group_of[prod.name]) != prod.name:
                continue  # not a Conv alone (an activation fused already)
            x = h.inputs[0]
            if kernel_output(ctx, part, prod.name) != x:
                continue
            readers = _readers(ctx, x)
            muls = [m for m in readers if m != h.name and mul_step.matches(ctx, m)
                    and set(ctx.graph.by_name[m].inputs) == {x, h.outputs[0]}]
            if len(readers) != 2 or len(muls) != 1 or x in ctx.outputs:
                continue
            if reason := conv_step.refuses(ctx, h.name, prod.name) or hs_step.refuses(ctx, h.name, h.name):
                self.reject(rule, h.name, reason)
                continue
            out = ctx.graph.by_name[muls[0]].outputs[0]
            if out in ctx.outputs or not any(ctx.op(r) == "Conv" or ctx.op(r) in POOLS
                                             for r in _readers(ctx, out)):
                self.reject(rule, h.name, "no conv or pool reads the product: it leaves the blocked layout")
                continue
            gids = {part.group_of[n] for n in (prod.name, h.name, muls[0])}
            if self.merge(part, gids, rule.name, h.name, "product") is None:
                self.reject(rule, h.name, CYCLE)

# Set by the NCHWc pass when it runs: the convs it rewrites are no plain Convs by the time
# ConvAddActivationFusion looks.
NCHWC_ON = "nchwc_on"
# ConvAddActivationFusion's activations (SelectActivation; Clip with constant bounds only): no Elu, no
# HardSwish, unlike ConvActivationFusion.
CONV_ADD_ACTIVATIONS = frozenset({"Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip", "HardSigmoid"})


def _has_bias(ctx: Context, part: Partition, conv: str) -> bool:
    """A bias input, or one the folds gave it at load: ConvBNFusion and ConvAddFusion write a bias where the
    Conv had none (ConvMulFusion only scales one)."""
    n = ctx.graph.by_name[conv]
    if len(n.inputs) > 2 and n.inputs[2]:
        return True
    out = n.outputs[0]
    while len(readers := ctx.graph.consumers.get(out, ())) == 1 and readers[0].name in part.folded:
        if readers[0].op_type in ("BatchNormalization", "Add"):
            return True
        out = readers[0].outputs[0]
    return False


def _same_shape(ctx: Context, add: str) -> str | None:
    """ORT's test on the Add: two operands of rank 4 whose dims are all known and equal (a broadcast Add, a
    bias or a scale, is not the residual FusedConv's Z input takes)."""
    n = ctx.graph.by_name[add]
    if len(n.inputs) != 2:
        return "not two operands"
    shapes = [ctx.graph.tensor(t).shape for t in n.inputs]
    if any(s is None or len(s) != 4 or None in s or 0 in s for s in shapes):
        return "an operand is not of rank 4 with every dim known"
    return None if shapes[0] == shapes[1] else f"it broadcasts {shapes[0]} with {shapes[1]}: not a residual"


def _residual_conv(ctx: Context, part: Partition, conv: str) -> str | None:
    """Why ORT's selector does not take this Conv as the one the Add goes into (None: it does)."""
    if _conv_of(ctx, part, part.group_of[conv]) != conv:
        return "it is fused with another op already"
    if ctx.memo.get(NCHWC_ON) and nchwc_conv(ctx, conv) is None:
        return "the NCHWc transformer rewrites it first (an NCHWc Conv is no Conv to this rule)"
    if ctx.graph.tensor(ctx.graph.by_name[conv].inputs[0]).dtype != 1:
        return "its input is not float32"
    if not _has_bias(ctx, part, conv):
        return "it has no bias (nor one from a folded BatchNormalization or Add)"
    return _single_use_kernel(ctx, part, conv)


CONV_ADD_ACT = Rule("ConvAddActivationFusion", (
    Step("conv", ops=frozenset({"Conv"})),
    Step("add", ops=frozenset({"Add"}), check=lambda ctx, a, n: _same_shape(ctx, n)),
    Step("activation", ops=CONV_ADD_ACTIVATIONS, check=_clip_bounds),
), mirrors="ORT ConvAddActivationFusion (ORT_ENABLE_ALL, CPU only, after the NCHWc transformer): a Conv with "
           "a bias that the NCHWc layout does not take, its single reader an Add of a same-shaped run-time "
           "tensor (a residual) and then Relu, Sigmoid, Tanh, LeakyRelu, HardSigmoid or a constant Clip, as "
           "one FusedConv (the activation optional)")


class ConvAddActPass(FusionPass):
    # Checked with synthetic graphs against onnxruntime 1.32 (tests/test_fusion_ort_conv.py).
    name = "conv_add_act"
    help = ("a biased Conv the NCHWc layout leaves alone, the residual Add reading it and an activation "
            "after it as one FusedConv: ORT's ConvAddActivationFusion")
    rules = (CONV_ADD_ACT,)

    def apply(self, ctx: Context, part: Partition) -> None:
        rule = CONV_ADD_ACT
        conv_step, add_step, act_step = rule.steps
        for n in ctx.matching(add_step):
            if not ctx.real(n.name) or len(ctx.real_members(part, part.group_of[n.name])) != 1:
                continue
            prods = [folded_source(ctx, part, t) for t in n.inputs]
            convs = [p.name for p, t in zip(prods, n.inputs, strict=True) if p is not None
                     and conv_step.matches(ctx, p.name) and kernel_output(ctx, part, p.name) == t]
            if not convs:
                continue
            if reason := add_step.refuses(ctx, convs[0], n.name):
                self.reject(rule, n.name, reason, anchor=convs[0])
                continue
            reasons = {c: _residual_conv(ctx, part, c) for c in convs}
            conv = next((c for c in convs if reasons[c] is None), None)
            if conv is None:
                for c in convs:
                    self.reject(rule, n.name, f"{c}: {reasons[c]}", anchor=c)
                continue
            merged = self.merge(part, {part.group_of[conv], part.group_of[n.name]}, rule.name, conv, "add")
            if merged is None:
                self.reject(rule, n.name, CYCLE, anchor=conv)
                continue
            readers = _readers(ctx, n.outputs[0])
            if len(readers) != 1 or n.outputs[0] in ctx.outputs:
                continue  # Conv + Add only
            act = readers[0]
            gids = {merged, part.group_of[act]}
            if (act_step.matches(ctx, act) and len(ctx.real_members(part, part.group_of[act])) == 1
                    and act_step.refuses(ctx, conv, act) is None
                    and self.merge(part, gids, rule.name, conv, "activation") is None):
                self.reject(rule, act, CYCLE, anchor=conv)


# ORT's GatherSliceToSplitFusion leaves graphs below opset 13 alone (Slice, Split and Squeeze change schema
# there): ShuffleNet's opset-11 channel split stays two Slices.
SLICE_SPLIT_OPSET = 13


def load_time_value(ctx: Context, tensor: str, depth: int = 0) -> np.ndarray | None:
    """The value of a tensor known once shapes are: a constant, or shape math on constants and on the shapes
    of tensors (`x.shape[-1] // 2`), as ORT's constant folding computes it before its fusions look at it.
    None where it is computed from data at run time."""
    memo = ctx.memo.setdefault("load_time_values", {})
    if tensor in memo:
        return memo[tensor]
    value = ctx.graph.constant_value(tensor)
    prod = ctx.graph.producer.get(tensor)
    static = ctx.static or load_time(ctx)  # what the shape pass folded, where one ran
    if value is None and prod is not None and prod.name in static and depth < 32:
        if prod.op_type in ("Shape", "Size"):
            shape = ctx.graph.tensor(prod.inputs[0]).shape
            if shape is not None and all(isinstance(d, int) for d in shape):
                dims = np.array(shape, dtype=np.int64)
                value = (np.array(dims.prod(), dtype=np.int64) if prod.op_type == "Size"
                         else dims[prod.attr("start", 0):prod.attr("end", None)])
        else:
            feeds = {t: load_time_value(ctx, t, depth + 1) for t in prod.inputs if t}
            if all(v is not None for v in feeds.values()):
                opset = [helper.make_opsetid(d, v) for d, v in ctx.graph.opsets.items()]
                outs = evaluate(prod.proto, feeds, opset, tuple(o.SerializeToString() for o in opset))
                if outs is not None and tensor in prod.outputs:
                    value = outs[[o for o in prod.outputs if o].index(tensor)]
    memo[tensor] = value
    return value


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
