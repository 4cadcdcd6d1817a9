"""Elementwise and broadcast ops: FLOPs per output element from one table.

Counting rule: one arithmetic or comparison instruction is one FLOP, and so is one special-function
evaluation (Exp, Log, Sqrt, Tanh, Erf, Sin...), which GPUs and TPUs issue as a single instruction. Compound
activations count their definition in those terms: Sigmoid = neg, exp, add, divide = 4. Conversions
(Cast) and selection by copy do no arithmetic.
"""

from __future__ import annotations

from .registry import OpContext, OpKind, Work, cost

FLOPS_PER_ELEMENT: dict[str, int] = {
    # arithmetic and comparison
    "Add": 1, "Sub": 1, "Mul": 1, "Div": 1, "Mod": 1, "Pow": 1, "Neg": 1, "Abs": 1, "Sign": 1,
    "Floor": 1, "Ceil": 1, "Round": 1, "Reciprocal": 1, "Equal": 1, "Less": 1, "LessOrEqual": 1,
    "Greater": 1, "GreaterOrEqual": 1, "And": 1, "Or": 1, "Xor": 1, "Not": 1, "BitShift": 1,
    "BitwiseAnd": 1, "BitwiseOr": 1, "BitwiseXor": 1, "BitwiseNot": 1, "IsNaN": 1, "IsInf": 1,
    "Where": 1, "Clip": 2, "Max": 1, "Min": 1, "Sum": 1, "Mean": 1,
    # special functions: one evaluation each
    "Exp": 1, "Log": 1, "Sqrt": 1, "Tanh": 1, "Erf": 1, "Sin": 1, "Cos": 1, "Tan": 1, "Asin": 1,
    "Acos": 1, "Atan": 1, "Sinh": 1, "Cosh": 1, "Asinh": 1, "Acosh": 1, "Atanh": 1,
    # activations, by their definition
    "Relu": 1, "LeakyRelu": 2, "PRelu": 2, "ThresholdedRelu": 1, "Sigmoid": 4, "HardSigmoid": 3,
    "HardSwish": 4, "Elu": 3, "Selu": 4, "Celu": 4, "Softplus": 3, "Softsign": 3, "Shrink": 2,
    "Gelu": 5, "Mish": 7, "Swish": 5,
    # conversions
    "Cast": 0, "CastLike": 0,
}
_VARIADIC = {"Max", "Min", "Sum", "Mean"}  # n-1 ops per element for n inputs (Mean adds one divide)
# Quantizing a tensor on the fly, per element: min and max scan (2), then divide, round, add zero point (3).
DYNAMIC_QUANTIZE_FLOPS = 5

# com.microsoft elementwise fusions, by their definition
_MS_FLOPS = {
    "Gelu": 5, "FastGelu": 8, "BiasGelu": 6, "QuickGelu": 5, "BiasAdd": 2, "BiasSplitGelu": 6,
    "RotaryEmbedding": 3, "Inverse": 1,
}

# The activations a runtime folds into the matrix op before them (ONNX Runtime's ConvActivationFusion and
# GemmActivationFusion), which FusedConv/FusedGemm then name in their `activation` attribute: fusion's
# activation rule reads this set, and each one is priced by the table above (a test checks).
FUSED_ACTIVATIONS = frozenset({"Relu", "Clip", "Sigmoid", "LeakyRelu", "Tanh", "HardSigmoid", "HardSwish"})


def activation_flops(name: str | bytes) -> int:
    """FLOPs per element of an activation that FusedConv/FusedGemm name in an attribute: the same table as
    the standalone op, so fusing never changes the arithmetic (an empty name is no activation)."""
    name = name.decode() if isinstance(name, bytes) else name
    return FLOPS_PER_ELEMENT.get(name, 1) if name else 0


def _kind(ctx: OpContext) -> OpKind:
    out = ctx.out()
    for i in range(ctx.n_inputs):
        if ctx.has(i) and ctx.shape(i) != out:
            return OpKind.BROADCAST
    return OpKind.ELEMENTWISE


def _make(op: str, per: int, domain: str = ""):
    @cost(op, domain=domain)
    def _formula(ctx: OpContext) -> Work:
        n = ctx.numel_out()
        per_el = per
        if op in _VARIADIC and domain == "":
            per_el = max(ctx.n_inputs - 1, 0) + (1 if op == "Mean" else 0)
        return Work(flops=n * per_el, kind=_kind(ctx))

    return _formula


for _op, _per in FLOPS_PER_ELEMENT.items():
    if _op != "Cast":
        _make(_op, _per)


@cost("Cast")
def _cast(ctx: OpContext) -> Work:
    # A Cast to the type its input already has is an Identity: every runtime drops it (ONNX Runtime's
    # CastElimination), legacy exports write one per `.to(torch.float32)` on float tensors.
    if ctx.has(0) and ctx.node.outputs and ctx.node.outputs[0]:
        src, dst = (ctx.graph.tensor(t).dtype for t in (ctx.node.inputs[0], ctx.node.outputs[0]))
        if src and src == dst:
            return Work(kind=OpKind.SHAPE)
    return Work(kind=_kind(ctx))  # a malformed node (no input or output) is refused here, by name


for _op, _per in _MS_FLOPS.items():
    _make(_op, _per, "com.microsoft")


# -- (de)quantization -----------------------------------------------------------------------------------

@cost("QuantizeLinear")
@cost("QuantizeLinear", domain="com.microsoft")
def _quantize(ctx: OpContext) -> Work:
    # divide by scale, round, add zero point (saturation is free in hardware)
    return Work(flops=3 * ctx.numel_out(), kind=_kind_q(ctx))


@cost("DequantizeLinear")
@cost("DequantizeLinear", domain="com.microsoft")
def _dequantize(ctx: OpContext) -> Work:
    return Work(flops=2 * ctx.numel_out(), kind=_kind_q(ctx))


@cost("DynamicQuantizeLinear")
def _dynamic_quantize(ctx: OpContext) -> Work:
    return Work(flops=DYNAMIC_QUANTIZE_FLOPS * ctx.numel(0), kind=OpKind.REDUCTION)


def _kind_q(ctx: OpContext) -> OpKind:
    # Per-axis scales broadcast along one axis; it is still one pass over the data.
    return OpKind.ELEMENTWISE if ctx.numel(1) == 1 else OpKind.BROADCAST


def _qlinear_binary(ctx: OpContext) -> Work:
    # dequantize both inputs (2 each), the op (1), requantize (3)
    return Work(flops=8 * ctx.numel_out(), kind=_kind(ctx))


def _qlinear_unary(ctx: OpContext) -> Work:
    # dequantize (2), the activation, requantize (3); ORT implements these as a lookup table, which the
    # count above overstates, but the bytes, which set the pace, are exact.
    return Work(flops=9 * ctx.numel_out(), kind=OpKind.ELEMENTWISE)


for _op in ("QLinearAdd", "QLinearMul"):
    cost(_op, domain="com.microsoft")(_qlinear_binary)
for _op in ("QLinearSigmoid", "QLinearLeakyRelu"):
    cost(_op, domain="com.microsoft")(_qlinear_unary)
