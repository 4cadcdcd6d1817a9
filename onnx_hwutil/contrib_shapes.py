"""Output shapes of the ops that ONNX Runtime's optimizers and quantizers write, where inference stops.

ONNX's shape inference does not know the com.microsoft domain, onnxruntime's symbolic inference covers only
part of it, and ONNX's own rules for the quantized ops give up when a scale or zero point is typed in a way
they do not expect; without these rules one such op leaves every tensor after it unshaped. Each rule is the
op's contract (onnxruntime's ContribOperators.md, the ONNX spec), given the input shapes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import NodeProto, helper

from .shape_readers import is_static, tensor_shapes

Shape = tuple[int, ...]


def _attr(node: NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _broadcast(*shapes: Shape) -> Shape:
    return tuple(np.broadcast_shapes(*shapes))


def _matmul(a: Shape, b: Shape, trans_a=0, trans_b=0) -> Shape:
    if trans_a and len(a) >= 2:
        a = (*a[:-2], a[-1], a[-2])
    if trans_b and len(b) >= 2:
        b = (*b[:-2], b[-1], b[-2])
    if len(a) == 1 or len(b) == 1:  # numpy's rule: a vector contracts with the other's matrix dim, adds none
        if a[-1] != (b[0] if len(b) == 1 else b[-2]):
            raise ValueError(f"matmul of {a} and {b}: inner dims differ")
        return (*b[:-2], b[-1]) if len(a) == 1 and len(b) > 1 else a[:-1]
    return (*_broadcast(a[:-2], b[:-2]), a[-2], b[-1])


def _conv(node: NodeProto, x: Shape, w: Shape, channels_last: bool = False) -> Shape:
    spatial = x[1:-1] if channels_last else x[2:]
    k = _attr(node, "kernel_shape") or w[2:]
    n = len(spatial)
    strides = _attr(node, "strides") or [1] * n
    dil = _attr(node, "dilations") or [1] * n
    pads = _attr(node, "pads") or [0] * (2 * n)
    auto = _attr(node, "auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    out = []
    for i in range(n):
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            out.append(-(-spatial[i] // strides[i]))
        elif auto == "VALID":
            out.append(-(-(spatial[i] - dil[i] * (k[i] - 1)) // strides[i]))
        else:
            out.append((spatial[i] + pads[i] + pads[i + n] - dil[i] * (k[i] - 1) - 1) // strides[i] + 1)
    return (x[0], *out, w[0]) if channels_last else (x[0], w[0], *out)


def _concat(node: NodeProto, shapes: list[Shape]) -> Shape:
    axis = int(_attr(node, "axis")) % len(shapes[0])
    return (*shapes[0][:axis], sum(s[axis] for s in shapes), *shapes[0][axis + 1:])


def _same(i: int = 0):
    return lambda node, s: [s[i]]


Rule = Callable[[NodeProto, list], list]
RULES: dict[str, Rule] = {
    **{op: _same() for op in ("Gelu", "FastGelu", "BiasGelu", "QuickGelu", "BiasAdd", "BiasSoftmax",
                              "QLinearSoftmax", "QLinearLeakyRelu", "QLinearSigmoid", "RotaryEmbedding",
                              "LayerNormalization", "SimplifiedLayerNormalization", "Inverse")},
    # SkipLayerNormalization: output, mean, inv_std_var, input_skip_bias_sum
    "SkipLayerNormalization": lambda n, s: [s[0], None, None, s[0]],
    "SkipSimplifiedLayerNormalization": lambda n, s: [s[0], None, None, s[0]],
    "QLinearAdd": lambda n, s: [_broadcast(s[0], s[3])],
    "QLinearMul": lambda n, s: [_broadcast(s[0], s[3])],
    "FusedMatMul": lambda n, s: [_matmul(s[0], s[1], _attr(n, "transA", 0), _attr(n, "transB", 0))],
    "DynamicQuantizeMatMul": lambda n, s: [_matmul(s[0], s[1])],
    "MatMulIntegerToFloat": lambda n, s: [_matmul(s[0], s[1])],
    "MatMulInteger16": lambda n, s: [_matmul(s[0], s[1])],
    "MatMulNBits": lambda n, s: [(*s[0][:-1], int(_attr(n, "N")))],
    "FusedGemm": lambda n, s: [_matmul(s[0], s[1], _attr(n, "transA", 0), _attr(n, "transB", 0))],
    "QGemm": lambda n, s: [_matmul(s[0], s[3], _attr(n, "transA", 0), _attr(n, "transB", 0))],
    "FusedConv": lambda n, s: [_conv(n, s[0], s[1])],
    "NhwcConv": lambda n, s: [_conv(n, s[0], s[1], channels_last=True)],
    "QLinearConcat": lambda n, s: [_concat(n, s[2::3])],
    "QLinearGlobalAveragePool": lambda n, s: [
        (s[0][0], 1, 1, s[0][-1]) if _attr(n, "channels_last", 0) else (*s[0][:2], *(1,) * (len(s[0]) - 2))],
    "Attention": lambda n, s: [(s[0][0], s[0][1], (_attr(n, "qkv_hidden_sizes") or [s[1][1] // 3] * 3)[2])],
    "EmbedLayerNormalization": lambda n, s: [(*s[0], s[2][1])],
}


def _layer_norm(node: NodeProto, s: list) -> list:
    """Y as X; Mean and InvStdDev as X with the normalized dims (axis on) kept as 1."""
    x = s[0]
    axis = _attr(node, "axis", -1) % len(x)
    stat = (*x[:axis], *(1,) * (len(x) - axis))
    return [x, stat, stat]


# Default-domain ops ONNX's own inference gives up on: quantized ops, and the norms onnxruntime's optimizer
# writes into the default domain at any opset (ONNX has LayerNormalization from 17 only, so an
# ORT-optimized opset-14 BERT would lose every shape after its first norm).
STANDARD: dict[str, Rule] = {
    "LayerNormalization": _layer_norm,
    "SimplifiedLayerNormalization": lambda n, s: _layer_norm(n, s)[:2],
    "QLinearMatMul": lambda n, s: [_matmul(s[0], s[3])],
    "MatMulInteger": lambda n, s: [_matmul(s[0], s[1])],
    "QLinearConv": lambda n, s: [_conv(n, s[0], s[3])],
    "ConvInteger": lambda n, s: [_conv(n, s[0], s[1])],
}


_U8, _I32, _F32 = onnx.TensorProto.UINT8, onnx.TensorProto.INT32, onnx.TensorProto.FLOAT
# The first output's dtype where it is not input 0's: (inputs that carry it, the first present wins; else
# the spec's default). Quantized ops output their output zero point's type (uint8 where it is omitted);
# integer products accumulate in int32; a QGemm without an output scale returns float.
OUT_DTYPE: dict[tuple[str, str], tuple[tuple[int, ...], int]] = {
    **{("", op): ((7,), _U8) for op in ("QLinearConv", "QLinearMatMul")},
    **{("com.microsoft", op): ((7,), _U8) for op in ("QLinearAdd", "QLinearMul")},
    **{("com.microsoft", op): ((4,), _U8) for op in ("QLinearGlobalAveragePool", "QLinearSoftmax",
                                                     "QLinearLeakyRelu", "QLinearSigmoid")},
    ("com.microsoft", "QLinearConcat"): ((1,), _U8),
    ("com.microsoft", "QGemm"): ((8,), _F32),
    ("", "MatMulInteger"): ((), _I32),
    ("", "ConvInteger"): ((), _I32),
    ("com.microsoft", "MatMulInteger16"): ((), _I32),
    ("com.microsoft", "MatMulIntegerToFloat"): ((2,), _F32),  # a_scale's type
    ("com.microsoft", "EmbedLayerNormalization"): ((2,), _F32),  # the word embedding's type, not the ids'
}


def output_dtype(node: NodeProto, dtype_of: Callable[[str], int]) -> int:
    """The dtype of a node's first output under the rules above; `dtype_of(tensor)` gives 0 where unknown."""
    domain = "" if node.domain in ("", "ai.onnx") else node.domain
    sources, default = OUT_DTYPE.get((domain, node.op_type), ((0,), _F32))
    for i in sources:
        if i < len(node.input) and node.input[i] and (dt := dtype_of(node.input[i])):
            return dt
    return default


def infer_output_shapes(node: NodeProto, input_shapes: list[Shape | None]) -> list[Shape | None] | None:
    """Output shapes of a node from its input shapes, or None if no rule applies."""
    domain = "" if node.domain in ("", "ai.onnx") else node.domain
    rule = RULES.get(node.op_type) if domain == "com.microsoft" else STANDARD.get(node.op_type) \
        if domain == "" else None
    if rule is None:
        return None
    try:
        return list(rule(node, input_shapes))
    except (TypeError, ValueError, IndexError, ZeroDivisionError):
        return None  # a missing input shape or a malformed node: leave its outputs unshaped


# Passes over the graph in its order: rules feed each other (a chain of fused ops), and a pass in graph
# order resolves a whole chain unless its nodes are stored out of order, each of which costs one more pass.
HINT_PASSES = 64


def hint_shapes(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """`model` with value infos for the outputs no inference layer shaped, from the rules above, and how many
    it added; passes run until one learns nothing new."""
    known = tensor_shapes(model.graph)
    added: dict[str, tuple[tuple[int, ...], int]] = {}
    for _ in range(HINT_PASSES):
        learned = 0
        for node in model.graph.node:
            if all((not o) or is_static(known.get(o, (None, 0))[0]) or o in added for o in node.output):
                continue
            ins = []
            for i in node.input:
                s = added.get(i, known.get(i, (None, 0)))[0]
                ins.append(s if is_static(s) else None)
            outs = infer_output_shapes(node, ins)
            if not outs:
                continue
            dtype = output_dtype(node, lambda t: added.get(t, known.get(t, (None, 0)))[1])
            for o, shape in zip(node.output, outs, strict=False):
                if o and shape is not None and o not in added and not is_static(known.get(o, (None, 0))[0]):
                    out_dtype = known.get(o, (None, 0))[1] or dtype
                    added[o] = (tuple(int(d) for d in shape), out_dtype)
                    learned += 1
        if not learned:
            break
    if not added:
        return model, 0
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.graph.value_info.extend(helper.make_tensor_value_info(n, dt, list(sh))
                                for n, (sh, dt) in added.items())
    return out, len(added)
