"""ONNX Runtime's QDQ node units: DequantizeLinear -> op -> QuantizeLinear run as one quantized kernel.

Mirrors ORT's QDQSelectorActionTransformer (onnxruntime/core/optimizer/qdq_transformer/selectors_actions/
qdq_selectors.cc, qdq_actions.cc): a target op whose quantized inputs all come from DequantizeLinear nodes and
whose every reader is a QuantizeLinear (its result no graph output) becomes QLinearConv, QLinearMatMul,
QLinearAdd, QLinearMul, QLinearSigmoid, ... ; for the ops that only move data (MaxPool, Transpose, Resize,
...) the DQ and Q are dropped and the op runs on the quantized tensor; around a view (Reshape, Flatten,
Squeeze, Unsqueeze) nothing is left to run, so the DQ, the view and the Q join the kernel that made the
quantized tensor. A DQ that several nodes read is duplicated by ORT (EnsureUniqueDQForNodeUnit), one copy
each: where node units alone read it, it joins the first of them and the others read its result; where a
float op reads it too, that op's copy runs as a DequantizeLinear kernel, so the DQ stays one and every unit
has its own copy.
"""

from __future__ import annotations

from .chains import CYCLE
from .context import METADATA_READERS, Context, FusionPass, Rule, Step
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


def _dequantized(ctx: Context, tensor: str) -> bool:
    prod = ctx.graph.producer.get(tensor) if tensor else None
    return prod is not None and prod.op_type == DQ


def _dummy_dq(ctx: Context, n, i: int) -> bool:
    """ORT's WhereDummyDq: a Where whose one branch is dequantized and whose other is a float scalar constant
    (a mask's fill value), read by one QuantizeLinear alone, gets a DQ made up for that constant, and so
    becomes a node unit (QLinearWhere)."""
    if n.op_type != "Where" or i not in (1, 2) or not _dequantized(ctx, n.inputs[3 - i]):
        return False
    t = ctx.graph.tensor(n.inputs[i])
    readers = ctx.readers(n.outputs[0])
    return (ctx.constant(n.inputs[i]) and t.shape == () and t.dtype == 1 and len(readers) == 1
            and ctx.op(readers[0]) == Q)


def _node_unit(ctx: Context, anchor: str, node: str) -> str | None:
    n = ctx.graph.by_name[node]
    wanted = QLINEAR.get(n.op_type, (0,))
    idx = range(len(n.inputs)) if wanted is None else wanted
    for i in idx:
        t = n.inputs[i] if i < len(n.inputs) else ""
        if not _dequantized(ctx, t) and not _dummy_dq(ctx, n, i):
            return f"its input {i} {t!r} does not come from a DequantizeLinear"
    out = n.outputs[0]
    if out in ctx.outputs:
        return f"its result {out!r} is a graph output"
    readers = ctx.readers(out)
    if not readers or any(ctx.op(r) != Q for r in readers):
        odd = next((r for r in readers if ctx.op(r) != Q), None)
        return f"its reader {odd} ({ctx.op(odd)}) is not a QuantizeLinear" if odd else "nothing reads it"
    if n.op_type in DATA_MOVEMENT:
        dq = ctx.graph.producer[n.inputs[0]]
        if not all(_same_quantization(ctx, dq, ctx.graph.by_name[r]) for r in readers):
            return "its DequantizeLinear and QuantizeLinear differ in scale or zero point: ORT drops neither"
    return None


def _dropped(ctx: Context, part: Partition, n) -> list[str]:
    """The DQ and Q of a data-movement unit, which ORT removes (DropQDQNodesRules: the op then moves the
    quantized bytes): those in the unit's kernel. Their work is gone, as a BatchNormalization's folded
    into its Conv."""
    gid = part.group_of[n.name]
    dq = ctx.graph.producer[n.inputs[0]]  # a unit's: _node_unit checked it, and its quantization
    if part.group_of[dq.name] != gid:
        return []
    return [dq.name, *(r for r in ctx.readers(n.outputs[0]) if part.group_of[r] == gid)]


def _same_quantization(ctx: Context, dq, q) -> bool:
    """DQ and Q with equal scale and zero point (the same tensors, or constants of equal values)."""
    for a, b in zip(dq.inputs[1:3], q.inputs[1:3], strict=False):
        if a == b:
            continue
        va, vb = ctx.graph.constant_value(a), ctx.graph.constant_value(b)
        if va is None or vb is None or va.shape != vb.shape or not (va == vb).all():
            return False
    return len(dq.inputs[1:3]) == len(q.inputs[1:3])


def _movable(ctx: Context, n) -> bool:
    """Does the node run (a view only among the data-movement ops, whose DQ and Q ORT drops)?"""
    return ctx.real(n.name) or n.op_type in DATA_MOVEMENT


def _why_not(ctx: Context, n) -> str | None:
    """None if the node is a node unit's target; else why not ('' for what is no candidate at all: a Q or
    DQ itself, shape math folded at load, a view that moves no data)."""
    if n.op_type in (DQ, Q) or n.name in ctx.static or not _movable(ctx, n):
        return ""
    if not any(_dequantized(ctx, t) for t in n.inputs):
        return "no input comes from a DequantizeLinear: a float op"
    return QDQ.steps[1].refuses(ctx, n.name, n.name)


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
        units = self._candidates(ctx)
        whys = ctx.memo["qdq_whys"]
        for n in ctx.matching(rule.steps[1]):
            if n.name not in units:
                if why := whys[n.name]:
                    self.reject(rule, n.name, why)
                continue
            gids = self._unit_groups(ctx, part, n, units)
            if isinstance(gids, str):
                self.reject(rule, n.name, gids)
                continue
            # a view runs nothing: it joins the kernel that made its quantized input, with its DQ and Q
            label = None if not ctx.real(n.name) else \
                n.op_type if n.op_type in DATA_MOVEMENT else "QLinear" + n.op_type
            if self.merge(part, gids, rule.name, n.name, "target", label=label) is None:
                self.reject(rule, n.name, CYCLE)
            elif n.op_type in DATA_MOVEMENT:
                part.folded.update(_dropped(ctx, part, n))

    def _unit_groups(self, ctx: Context, part: Partition, n, units: set[str]) -> set[int] | str:
        """The groups the node unit of `n` merges (its DQs, itself, its Qs; a view's source too), or why
        it cannot."""
        gid = part.group_of[n.name]
        gids = {gid} | {part.group_of[r] for r in ctx.readers(n.outputs[0])}
        for t in n.inputs:
            prod = ctx.graph.producer.get(t) if t else None
            if prod is not None and prod.op_type == DQ and self._own(ctx, prod, units):
                pg = part.group_of[prod.name]
                if len(ctx.real_members(part, pg)) == 1 or pg == gid:
                    gids.add(pg)  # a DQ another unit took already: ORT gives this one its own copy
        if any(g != gid and len(ctx.real_members(part, g)) > 1 and not self._unit(ctx, part, g)
               for g in gids):
            return "a DQ or Q of it is already fused into another kernel"
        if not ctx.real(n.name):
            dq = ctx.graph.producer[n.inputs[0]]
            source = ctx.graph.producer.get(dq.inputs[0])
            if source is None or part.group_of[dq.name] not in gids:
                return ("its DequantizeLinear reads a graph input, or another op reads it too: no kernel "
                        "that quantized its input to join")
            gids.add(part.group_of[source.name])
        return gids

    @staticmethod
    def _candidates(ctx: Context) -> set[str]:
        """The nodes that are node units by their own inputs and readers (a property of the graph alone)."""
        if "qdq_units" not in ctx.memo:
            whys = ctx.memo["qdq_whys"] = {n.name: _why_not(ctx, n) for n in ctx.matching(QDQ.steps[1])}
            ctx.memo["qdq_units"] = {name for name, why in whys.items() if why is None}
        return ctx.memo["qdq_units"]

    @staticmethod
    def _own(ctx: Context, dq, units: set[str]) -> bool:
        """May a unit take this DQ in? Not one folded at load, nor one a float op (or the graph's output)
        reads too: ORT keeps that op's copy as a kernel of its own."""
        out = dq.outputs[0]
        return (dq.name not in ctx.static and out not in ctx.outputs
                and all(r in units or r in ctx.static or ctx.op(r) in METADATA_READERS
                        for r in ctx.readers(out)))  # a Shape of it is folded: no reader at run time

    @staticmethod
    def _unit(ctx: Context, part: Partition, gid: int) -> bool:
        """Is the group only Q/DQ nodes (a DQ that another unit's Q feeds through is no kernel of its own)?"""
        return all(ctx.op(m) in (DQ, Q) for m in ctx.real_members(part, gid))
