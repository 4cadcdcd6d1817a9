"""ONNX Runtime's convolution epilogues at ORT_ENABLE_ALL on the CPU: the NCHWc transformer's folding of a
residual Add and its Relu, or of x * HardSigmoid(x), into a convolution in the blocked layout, and
ConvAddActivationFusion for a biased convolution that layout leaves alone. Each is a `Rule` named after the
ORT transformer it mirrors, with its conditions as its steps' checks (onnxruntime/core/optimizer/
nchwc_transformer.cc, conv_add_act_fusion.cc), checked with synthetic graphs against onnxruntime 1.32."""

from __future__ import annotations

from .chains import CYCLE, _clip_bounds, folded_source, kernel_output
from .context import Context, FusionPass, Rule, Step
from .partition import Partition

# The NCHWc layout's conditions, as onnxruntime 1.32 applies them on this project's AVX-512 machine (checked
# with synthetic convolutions in tests/test_fusion_ort_rules.py): a conv with fewer than NCHWC_BLOCK input
# channels reads the plain NCHW tensor; otherwise its channels (and a depthwise conv's, and a pool's) must be
# multiples of NCHWC_ALIGN; output channels are padded up to the block.
NCHWC_BLOCK = 16
NCHWC_ALIGN = 4
POOLS = frozenset({"MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool"})


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


# The activations the NCHWc transformer folds into an NCHWc conv it made (checked with sessions: LeakyRelu
# and Clip stay apart, in the plain layout).
NCHWC_ACTIVATIONS = frozenset({"Relu", "Sigmoid", "Tanh", "HardSigmoid"})


def _nchwc_batchnorm(ctx: Context, anchor: str, node: str) -> str | None:
    n = ctx.graph.by_name[node]
    shape = ctx.graph.tensor(n.inputs[0]).shape
    if not shape or len(shape) != 4:
        return "not a 4-D BatchNormalization"
    if not all(ctx.constant(t) for t in n.inputs[1:5] if t) or (len(n.outputs) > 1 and any(n.outputs[1:])):
        return "its scale, bias, mean or variance is computed at run time, or it has training outputs"
    return None


NCHWC_BATCHNORM = Rule("NchwcTransformer", (
    Step("batchnorm", ops=frozenset({"BatchNormalization"}), check=_nchwc_batchnorm),
    Step("activation", ops=NCHWC_ACTIVATIONS),
), mirrors="ORT NchwcTransformer: a BatchNormalization reading the blocked layout (a pre-activation "
           "network's BN -> Relu -> Conv after a Concat of convs: DenseNet) runs as a depthwise NCHWc Conv, "
           "and the Relu, Sigmoid, Tanh or HardSigmoid after it as that Conv's activation")


class NchwcPass(FusionPass):
    # ORT registers the transformer only where MLAS has an NCHWc block (MlasNchwcGetBlockSize() > 1:
    # x86 with AVX2 or AVX-512); a CPU without one (`--disable nchwc`) leaves the Add and the Relu to
    # ConvAddActivationFusion (the conv_add_act pass: a biased Conv only); ORT_ENABLE_EXTENDED runs neither
    # (`--disable nchwc --disable conv_add_act`).
    name = "nchwc"
    help = ("CPU only, at ORT_ENABLE_ALL: ORT's NCHWc transformer folds a residual Add (both operands from "
            "NCHWc convolutions or pools) into the single-use Conv that feeds it, then a Relu after it, "
            "x * HardSigmoid(x) on a Conv's output into that Conv (HardSwish), and runs a BatchNormalization "
            "in the blocked layout as a conv that takes the activation after it")
    rules = (NCHWC_ADD, NCHWC_HARD_SWISH, NCHWC_BATCHNORM)

    def apply(self, ctx: Context, part: Partition) -> None:
        ctx.memo[NCHWC_ON] = True  # ConvAddActivationFusion, after this pass, leaves its convs alone
        self._hard_swish(ctx, part)
        self._batchnorm(ctx, part)
        rule = NCHWC_ADD
        memo: dict[str, bool] = {}  # read after the BN merges: a layout answer may depend on the partition
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
                           and ctx.single_use(kernel_output(ctx, part, conv)) is None), None)
            if target is None:
                self.reject(rule, n.name, "neither operand comes from a Conv of its own (no activation fused "
                            "yet) that nothing else reads")
                continue
            merged = self.merge(part, {gid, target}, rule.name, n.name, "sum")
            if merged is None:
                self.reject(rule, n.name, CYCLE)
                continue
            readers = ctx.readers(n.outputs[0])
            if (len(readers) == 1 and n.outputs[0] not in ctx.outputs
                    and rule.steps[2].matches(ctx, readers[0])
                    and len(ctx.real_members(part, part.group_of[readers[0]])) == 1):
                self.merge(part, {merged, part.group_of[readers[0]]}, rule.name, n.name, "relu")

    def _batchnorm(self, ctx: Context, part: Partition) -> None:
        rule = NCHWC_BATCHNORM
        bn_step, act_step = rule.steps
        memo: dict[str, bool] = {}
        for n in ctx.matching(bn_step):
            if not ctx.real(n.name) or len(ctx.real_members(part, part.group_of[n.name])) != 1:
                continue  # folded into its Conv (ConvBNFusion) or taken already
            readers = ctx.readers(n.outputs[0])
            if len(readers) != 1 or n.outputs[0] in ctx.outputs or not act_step.matches(ctx, readers[0]):
                continue  # no activation to take: the BN runs as one NCHWc conv either way
            if reason := bn_step.refuses(ctx, n.name, n.name):
                self.reject(rule, n.name, reason)
            elif not _nchwc_tensor(ctx, part, n.inputs[0], memo):
                self.reject(rule, n.name, "its input is not in the blocked layout (not from an NCHWc conv, "
                            "pool, Add, Concat or Relu)")
            elif len(ctx.real_members(part, part.group_of[readers[0]])) != 1:
                self.reject(rule, readers[0], "the activation is taken already", anchor=n.name)
            elif self.merge(part, {part.group_of[n.name], part.group_of[readers[0]]}, rule.name, n.name,
                            "activation") is None:
                self.reject(rule, n.name, CYCLE)

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
            readers = ctx.readers(x)
            muls = [m for m in readers if m != h.name and mul_step.matches(ctx, m)
                    and set(ctx.graph.by_name[m].inputs) == {x, h.outputs[0]}]
            if len(readers) != 2 or len(muls) != 1 or x in ctx.outputs:
                continue
            if reason := conv_step.refuses(ctx, h.name, prod.name) or hs_step.refuses(ctx, h.name, h.name):
                self.reject(rule, h.name, reason)
                continue
            out = ctx.graph.by_name[muls[0]].outputs[0]
            if out in ctx.outputs or not any(ctx.op(r) == "Conv" or ctx.op(r) in POOLS
                                             for r in ctx.readers(out)):
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
    return ctx.single_use(kernel_output(ctx, part, conv))


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
            readers = ctx.readers(n.outputs[0])
            if len(readers) != 1 or n.outputs[0] in ctx.outputs:
                continue  # Conv + Add only
            act = readers[0]
            gids = {merged, part.group_of[act]}
            if (act_step.matches(ctx, act) and len(ctx.real_members(part, part.group_of[act])) == 1
                    and act_step.refuses(ctx, conv, act) is None
                    and self.merge(part, gids, rule.name, conv, "activation") is None):
                self.reject(rule, act, CYCLE, anchor=conv)
