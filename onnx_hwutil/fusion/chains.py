"""Chain rules: a matrix op and what a runtime folds into it, written as data (`Rule`s of `Step`s).

Each rule is named after the ONNX Runtime transformer it mirrors. Its steps say which ops may stand where
and why a candidate is refused; the pass beside it walks the graph and records every refusal.
"""

from __future__ import annotations

from ..ops.elementwise import FUSED_ACTIVATIONS
from .context import MATMUL_OPS, MATRIX, Context, FusionPass, Rule, Step, group_name
from .ort_fold import ort_known_dims
from .partition import Partition

CYCLE = "merging would close a cycle through another subgraph"
# Matrix ops ORT fuses no bias Add into (a MatMul takes one: MatMulAddFusion makes a Gemm of the two).
NO_BIAS_ADD = frozenset({"Conv", "ConvTranspose", "Gemm"})


def _constant_operands(ctx: Context, conv: str, bn: str) -> str | None:
    # Folding rewrites the weights at load: they and BN's statistics must be constants, and the conv's
    # own output must not be needed by anyone else (another node or the graph's outputs).
    for t in (*ctx.graph.by_name[bn].inputs[1:5], *ctx.graph.by_name[conv].inputs[1:]):
        if t and not ctx.constant(t):
            return f"{t!r} is known only at run time: folding rewrites the weights at load"
    out = ctx.graph.by_name[bn].inputs[0]
    readers = [c.name for c in ctx.graph.consumers.get(out, ())]
    if readers != [bn]:
        others = [r for r in readers if r != bn] or [f"{bn} twice"]
        return f"the {ctx.op(conv)}'s output {out!r} has other readers ({', '.join(others[:3])})"
    if out in ctx.outputs:
        return f"the {ctx.op(conv)}'s output {out!r} is a graph output"
    return None


def _bias(ctx: Context, matrix: str, node: str) -> str | None:
    if not ctx.const_input(node):
        return "no constant operand: a sum of two run-time tensors (a residual), not a bias"
    # ORT fuses no bias Add into a Gemm or a ConvTranspose, and into a Conv only a constant per-channel
    # one, folded into its bias at load (ConvAddFusion: the conv_mul_add pass, before this one looks)
    # (checked against onnxruntime 1.32 in tests/test_fusion_ort_rules.py)
    if ctx.op(matrix) in NO_BIAS_ADD:
        conv = ctx.op(matrix) == "Conv"
        return f"ORT fuses no constant Add into a {ctx.op(matrix)}" + (
            " but a per-channel one, folded into its bias (ConvAddFusion)" if conv else "")
    # a bias broadcasts into the output; a constant that grows it is something else
    grown, own = (ctx.graph.tensor(ctx.graph.by_name[n].outputs[0]).shape for n in (node, matrix))
    return None if grown == own else f"the constant grows the output from {own} to {grown}: not a bias"


def _scale(ctx: Context, matrix: str, node: str) -> str | None:
    if ctx.op(matrix) not in MATMUL_OPS:
        return f"a scale folds into a MatMul's alpha, not into a {ctx.op(matrix)}"
    # MatMulScaleFusion takes a scale right at the MatMul; after its bias Add the pair is a Gemm, which takes
    # none (checked with onnxruntime 1.32 sessions, tests/test_ort_fold.py)
    if _after_bias(ctx, node):
        return "after the bias Add: ORT folds a scale into a MatMul, not into the Gemm it makes with its bias"
    return None if ctx.scalar_operand(node) else "no constant scalar operand: not a scale"


def _after_bias(ctx: Context, node: str) -> bool:
    prod = ctx.graph.producer.get(ctx.graph.by_name[node].inputs[0])
    return prod is not None and prod.op_type == "Add"


def _activation(ctx: Context, matrix: str, node: str) -> str | None:
    # ORT has no MatMul+activation fusion on the CPU: a MatMul takes its activation only as the Gemm that
    # MatMulAddFusion makes of it and its bias (GemmActivationFusion); a Conv or Gemm takes one directly
    if ctx.op(matrix) in MATMUL_OPS:
        if not _after_bias(ctx, node):
            return (f"no bias Add before it: ORT fuses an activation into a Gemm or a Conv, not a "
                    f"{ctx.op(matrix)}")
        # MatMulAddFusion makes a Gemm of a MatMul of more than two dims between two Reshapes, and
        # GemmActivationFusion does not look past the second (checked with sessions, tests/test_ort_fold.py)
        a = ctx.graph.tensor(ctx.graph.by_name[matrix].inputs[0]).shape
        if a is not None and len(a) != 2:
            return (f"its MatMul reads a {len(a)}-D input: ORT's Gemm of it sits between Reshapes, which "
                    "keep the activation out")
    return _clip_bounds(ctx, matrix, node)


def _clip_bounds(ctx: Context, matrix: str, node: str) -> str | None:
    n = ctx.graph.by_name[node]
    if n.op_type != "Clip" or len(n.inputs) == 1 or ctx.const_input(node):
        return None
    return "its bounds are known only at run time"


def _last_two_dims(ctx: Context, matmul: str, node: str) -> str | None:
    perm = ctx.graph.by_name[node].attr("perm") or []
    perm = list(perm) if isinstance(perm, list) and all(isinstance(p, int) for p in perm) else []
    rank = len(perm)
    if rank >= 2 and perm[:-2] == list(range(rank - 2)) and perm[-2:] == [rank - 1, rank - 2]:
        return None
    return f"perm {perm or '(default)'} moves more than the last two dims: a real copy"


def _scalar_scale(ctx: Context, matmul: str, node: str) -> str | None:
    return None if ctx.scalar_operand(node) else "no constant scalar operand: not a scale"


def _constant_index(ctx: Context, table: str, node: str) -> str | None:
    i = ctx.graph.by_name[node].inputs[1]
    return None if ctx.constant(i) and ctx.graph.tensor(i).numel == 1 else \
        f"its index {i!r} is not a constant scalar"


# Conv's element types (ORT's IsFloatingPointDataType): float, float16, double, bfloat16.
FLOAT_TYPES = frozenset({1, 10, 11, 16})


def kernel_output(ctx: Context, part: Partition, node: str) -> str:
    """The tensor a node's kernel writes once the nodes folded into it are gone: its own output, or that of
    the last folded node reading it alone (a Conv's, after its BatchNormalization, Mul and Add)."""
    out = ctx.graph.by_name[node].outputs[0]
    while True:
        readers = ctx.graph.consumers.get(out, ())
        if len(readers) != 1 or readers[0].name not in part.folded or out in ctx.outputs:
            return out
        out = readers[0].outputs[0]


def folded_source(ctx: Context, part: Partition, tensor: str):
    """The node whose kernel writes a tensor: its producer, or the node a folded producer was folded into."""
    prod = ctx.graph.producer.get(tensor)
    while prod is not None and prod.name in part.folded and prod.inputs:
        prod = ctx.graph.producer.get(prod.inputs[0])
    return prod


def _per_channel(ctx: Context, conv: str, node: str, scalar: bool) -> str | None:
    """ORT's ConvMulFusion / ConvAddFusion conditions on the Mul or Add (the node) after a Conv: its second
    operand a constant of the weights' float type shaped [C, 1, 1] or [1, C, 1, 1] (C the output channels;
    a scalar too for a Mul), the conv's weights and bias constants."""
    n, c = ctx.graph.by_name[node], ctx.graph.by_name[conv]
    if ctx.graph.opsets.get("", 0) < 7:
        return f"opset {ctx.graph.opsets.get('', 0)}: ORT folds a {n.op_type} from opset 7 on"
    for t in c.inputs[1:]:
        if t and not ctx.constant(t):
            return f"the conv's {t!r} is known only at run time: folding rewrites the weights at load"
    if len(n.inputs) != 2 or not ctx.constant(n.inputs[1]) or ctx.constant(n.inputs[0]):
        return f"its constant is its first operand: ORT folds {n.op_type}(conv result, constant) only"
    w, k = ctx.graph.tensor(c.inputs[1]), ctx.graph.tensor(n.inputs[1])
    if w.dtype not in FLOAT_TYPES or k.dtype != w.dtype or w.shape is None or len(w.shape) <= 2:
        return "the weights are not a float tensor of rank 3 or more with the constant's element type"
    shape, rank = list(k.shape or ()), len(w.shape)
    if not shape and scalar:
        return None
    axis = {rank: 1, rank - 1: 0}.get(len(shape))
    if axis is None or shape[axis] != w.shape[0] or any(d != 1 for i, d in enumerate(shape) if i != axis):
        what = "[C, 1, 1] or [1, C, 1, 1]" + (" or a scalar" if scalar else "")
        return f"its constant of shape {shape} is not per output channel ({what}, C = {w.shape[0]})"
    b = ctx.graph.tensor(c.inputs[2]) if len(c.inputs) > 2 and c.inputs[2] else None
    if b is not None and (b.dtype != k.dtype or list(b.shape or ()) != [w.shape[0]]):
        return "the conv's bias is not a 1-D tensor of the constant's type, one value per output channel"
    return None


CONV_MUL = Rule("ConvMulFusion", (
    Step("conv", ops=frozenset({"Conv"})),
    Step("mul", ops=frozenset({"Mul"}), check=lambda ctx, conv, n: _per_channel(ctx, conv, n, scalar=True)),
), mirrors="ORT ConvMulFusion (a constant per-channel or scalar Mul folded into the weights at load: its "
           "work disappears)")

CONV_ADD = Rule("ConvAddFusion", (
    Step("conv", ops=frozenset({"Conv"})),
    Step("add", ops=frozenset({"Add"}), check=lambda ctx, conv, n: _per_channel(ctx, conv, n, scalar=False)),
), mirrors="ORT ConvAddFusion (a constant per-channel Add folded into the bias at load: its work disappears)")

CONV_BN = Rule("ConvBNFusion", (
    Step("matrix", ops=frozenset({"Conv", "ConvTranspose", "Gemm"})),
    Step("batchnorm", ops=frozenset({"BatchNormalization"}), check=_constant_operands),
), mirrors="ORT ConvBNFusion (BN folded into the weights at load: its work disappears)")

BIAS_SCALE_ACTIVATION = Rule("BiasScaleActivation", (
    Step("matrix", kinds=frozenset({MATRIX})),
    Step("bias", ops=frozenset({"Add"}), check=_bias),
    Step("scale", ops=frozenset({"Mul", "Div"}), check=_scale),
    Step("activation", ops=FUSED_ACTIVATIONS, check=_activation),
), mirrors="ORT ConvActivationFusion, GemmActivationFusion, MatMulAddFusion, MatMulScaleFusion")

TRANSPOSE_OPERAND = Rule("MatMulTransposeFusion", (
    Step("transpose", ops=frozenset({"Transpose"}), check=_last_two_dims),
    Step("matmul", ops=frozenset({"MatMul"})),
), mirrors="ORT MatMulTransposeFusion (FusedMatMul transA/transB)")

SCALE_OPERAND = Rule("MatMulScaleFusion", (
    Step("scale", ops=frozenset({"Mul", "Div"}), check=_scalar_scale),
    Step("matmul", ops=frozenset({"MatMul"})),
), mirrors="ORT MatMulScaleFusion (FusedMatMul alpha)")

GATHER_SPLIT = Rule("GatherToSplitFusion", (
    Step("gather", ops=frozenset({"Gather"}), check=_constant_index),
), mirrors="ORT GatherToSplitFusion (sibling Gathers of one tensor become one Split)")


def _reader_taken(ctx: Context, part: Partition, gid: int) -> str:
    real = ctx.real_members(part, gid)
    first = part.members[gid][0]
    if not real:
        return f"its reader {first} does no work (a view): nothing to fuse into"
    return f"its reader {real[0]} is already fused with {len(real) - 1} other op(s)"


class ConvBnPass(FusionPass):
    name = "conv_bn"
    help = "fold BatchNormalization into the preceding Conv/ConvTranspose/Gemm (its work disappears)"
    rules = (CONV_BN,)

    def apply(self, ctx: Context, part: Partition) -> None:
        rule = CONV_BN
        for n in ctx.matching(rule.steps[1]):
            if n.name in part.folded:
                continue
            if len(n.inputs) < 5:
                self.reject(rule, n.name, "no four statistics inputs to fold")
                continue
            prod = folded_source(ctx, part, n.inputs[0])  # through a Mul or Add folded into the conv first
            if prod is None or not rule.steps[0].matches(ctx, prod.name):
                source = f"{prod.name} ({prod.op_type})" if prod else "the graph's inputs"
                self.reject(rule, n.name, f"its input comes from {source}, not a Conv, ConvTranspose or Gemm")
                continue
            reason = rule.steps[1].refuses(ctx, prod.name, n.name)
            if reason:
                self.reject(rule, n.name, reason, anchor=prod.name)
            elif self.merge(part, {part.group_of[prod.name], part.group_of[n.name]}, rule.name, prod.name,
                            "batchnorm") is not None:
                part.folded.add(n.name)
            else:
                self.reject(rule, n.name, CYCLE, anchor=prod.name)


class ConvMulAddPass(FusionPass):
    # ORT applies these with ConvBNFusion, as one set of rewrite rules, until none applies: a chain of
    # BatchNormalization, Mul and Add after a Conv folds whole, in any order.
    name = "conv_mul_add"
    help = ("fold a constant per-channel (or scalar) Mul and a constant per-channel Add after a Conv into "
            "its weights and bias (ORT ConvMulFusion, ConvAddFusion: their work disappears)")
    rules = (CONV_MUL, CONV_ADD)

    def apply(self, ctx: Context, part: Partition) -> None:
        for conv in ctx.matching(CONV_MUL.steps[0]):
            while self._fold_next(ctx, part, conv.name):
                pass

    def _fold_next(self, ctx: Context, part: Partition, conv: str) -> bool:
        """Fold the Mul or Add that reads the conv's result, if ORT would: whether one was."""
        readers = ctx.graph.consumers.get(kernel_output(ctx, part, conv), ())
        rule = next((r for r in self.rules if readers and r.steps[1].matches(ctx, readers[0].name)), None)
        if rule is None:
            return False
        node = readers[0].name
        if not ctx.const_input(node):
            return False  # a product or sum of two run-time tensors (a residual): no candidate
        gid, nid = part.group_of[conv], part.group_of[node]
        reason = (ctx.single_use(kernel_output(ctx, part, conv), "the conv's result")
                  or rule.steps[1].refuses(ctx, conv, node)
                  or (f"already fused into {group_name(part, nid)}" if len(ctx.real_members(part, nid)) > 1
                      else None))
        if reason:
            self.reject(rule, node, reason, anchor=conv)
            return False
        if self.merge(part, {gid, nid}, rule.name, conv, rule.steps[1].name) is None:
            self.reject(rule, node, CYCLE, anchor=conv)
            return False
        part.folded.add(node)
        return True


class ActivationPass(FusionPass):
    name = "activation"
    help = ("matrix op + constant bias add, constant scale and one activation: ONNX Runtime's CPU fusions "
            "(ConvActivation, MatMulAdd, MatMulScale, GemmActivation)")
    rules = (BIAS_SCALE_ACTIVATION,)

    def apply(self, ctx: Context, part: Partition) -> None:
        rule = BIAS_SCALE_ACTIVATION
        for n in ctx.matching(rule.steps[0]):
            gid = part.group_of[n.name]
            if ctx.real_members(part, gid)[-1] != n.name:
                continue  # has an epilogue already: this pass takes one per matrix op, once
            stage, last = 1, n.name  # the steps after the matrix op, each at most once and in order
            while stage < len(rule.steps):
                nxt = ctx.sole_consumer(part, gid)
                if nxt is None:
                    self.reject(rule, last, ctx.no_sole_consumer(part, gid), anchor=n.name)
                    break
                real = ctx.real_members(part, nxt)
                if len(real) != 1:
                    self.reject(rule, last, _reader_taken(ctx, part, nxt), anchor=n.name)
                    break
                c = real[0]
                step = rule.step_for(ctx, c, stage)
                if step is None:  # the chain ends: its reader is no part of this pattern
                    if last == n.name:
                        fits = ", ".join(s.name for s in rule.steps[stage:])
                        self.reject(rule, n.name, f"its reader {c} ({ctx.op(c)}) fits no step ({fits})")
                    break
                reason = step.refuses(ctx, n.name, c)
                if reason:
                    self.reject(rule, c, f"{step.name}: {reason}", anchor=n.name)
                    break
                merged = self.merge(part, {gid, nxt}, rule.name, n.name, step.name)
                if merged is None:
                    self.reject(rule, c, CYCLE, anchor=n.name)
                    break
                gid, last, stage = merged, c, rule.steps.index(step) + 1


def _split_axis_unseen(ctx: Context, tensor: str, gather) -> str | None:
    # ORT's GatherToSplitFusion sizes the Split from the tensor's inferred shape: the axis must be known to
    # its shape inference (a shape vector of a tensor it cannot see is not; checked with sessions)
    known = ort_known_dims(ctx, tensor)
    axis = gather.attr("axis", 0)
    if known is None or not -len(known) <= axis < len(known) or not known[axis]:
        return "onnxruntime's shape inference does not know the size it would split"
    return None


class OperandPass(FusionPass):
    name = "operand"
    help = ("what ONNX Runtime folds into a matmul's operands and siblings: a last-two-dims Transpose or a "
            "constant scalar scale feeding a MatMul (FusedMatMul transA/transB/alpha), and sibling Gathers "
            "of one tensor at constant indices (one Split)")
    rules = (TRANSPOSE_OPERAND, SCALE_OPERAND, GATHER_SPLIT)

    def apply(self, ctx: Context, part: Partition) -> None:
        for n in ctx.matching(TRANSPOSE_OPERAND.steps[1]):
            for t in n.inputs[:2]:
                self._absorb(ctx, part, n.name, ctx.graph.producer.get(t))
        self._splits(ctx, part)

    def _absorb(self, ctx: Context, part: Partition, mm: str, prod) -> None:
        if prod is None or not ctx.real(prod.name):
            return
        rule = next((r for r in (TRANSPOSE_OPERAND, SCALE_OPERAND) if r.steps[0].matches(ctx, prod.name)),
                    None)
        pg, mg = part.group_of[prod.name], part.group_of[mm]
        if rule is None or pg == mg:
            return  # no operand this pass folds, or one it folded already
        if len(ctx.real_members(part, pg)) != 1:
            # already part of another kernel (a GELU's final x0.5, say)
            self.reject(rule, prod.name, f"already fused into {group_name(part, pg)}", anchor=mm)
        elif (sole := ctx.sole_consumer(part, pg)) != mg:
            self.reject(rule, prod.name, ctx.no_sole_consumer(part, pg) if sole is None
                        else f"its result reaches {mm} through another subgraph", anchor=mm)
        elif reason := rule.steps[0].refuses(ctx, mm, prod.name):
            self.reject(rule, prod.name, reason, anchor=mm)
        elif self.merge(part, {pg, mg}, rule.name, mm, rule.steps[0].name) is None:
            self.reject(rule, prod.name, CYCLE, anchor=mm)

    def _splits(self, ctx: Context, part: Partition) -> None:
        rule = GATHER_SPLIT
        step = rule.steps[0]
        candidates: dict[str, list] = {}  # data tensor -> the Gathers reading it (found once, not per tensor)
        for n in ctx.matching(step):
            if n.inputs and ctx.real(n.name):
                candidates.setdefault(n.inputs[0], []).append(n)
        for t in ctx.graph.consumers:  # in the order the tensors are first read, as merges depend on it
            readers = candidates.get(t)
            if readers is None:
                continue
            gathers, refused = [], []
            for r in readers:
                reason = step.refuses(ctx, t, r.name) or _split_axis_unseen(ctx, t, r)
                if reason:
                    refused.append((r.name, reason))
                else:
                    gathers.append(r.name)
            if len(gathers) > 1:
                self.merge(part, {part.group_of[g] for g in gathers}, rule.name, gathers[0], step.name,
                           label="Split")
            else:
                refused += [(g, f"no other Gather reads {t!r} at a constant index") for g in gathers]
            for g, reason in refused:
                self.reject(rule, g, reason)
