"""onnxruntime's nodes as the `ort` preset reads them: which are kernels, which only rename a value, how
onnxruntime names the nodes it makes, and which kernels it grows past the node they come from."""

from __future__ import annotations

import re

import onnx

# Not kernels, on either side: shape-only ops, and layout changes (Transpose, which both sides count apart).
NOT_KERNELS = frozenset({"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Shape", "Constant",
                         "Transpose", "Dropout"})
# The NCHWc transformer's layout changes (domain com.microsoft.nchwc), at ORT_ENABLE_ALL: counted apart.
REORDERS = frozenset({"ReorderInput", "ReorderOutput"})
# Nodes that hand their first input on under another name or layout: no work of their own to map.
WIRES = (NOT_KERNELS - {"Shape", "Constant"}) | REORDERS
# The NCHWc transformer names a node after our output tensor, plus one of these (`_bn_nchwc`: a
# BatchNormalization it runs as a depthwise convolution).
NCHWC_SUFFIXES = ("_bn_nchwc", "_nchwc")
# The layout transformer (NHWC for QLinearConv and its neighbours) renames a node it rewrites to our node's
# name plus this, and names its output after our node.
TOKEN = re.compile(r"_token_\d+$")
# onnxruntime's quantized kernels (QLinearConv, QGemm, the NHWC uint8 pools...).
QUANTIZED = ("QLinear", "QGemm", "QAttention", "Nhwc")
# Ops whose identical copies compute different values: no common subexpression to eliminate.
RANDOM = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
                    "Bernoulli"})


def label(node: onnx.NodeProto) -> str:
    """ORT's op as tables name it: NCHWc ones as `nchwc.OP`, the others by their op type."""
    return "nchwc." + node.op_type if node.domain.endswith("nchwc") else node.op_type


def is_kernel(node: onnx.NodeProto) -> bool:
    return node.op_type not in NOT_KERNELS and node.op_type not in REORDERS


def grows(node: onnx.NodeProto) -> bool:
    """Does onnxruntime grow the kernel past the node it names it after? An NCHWc convolution takes a
    residual Sum and an activation, a quantized kernel the QuantizeLinear that ends its QDQ node unit; other
    kernels end where their node does."""
    return node.domain.endswith("nchwc") or node.op_type.startswith(QUANTIZED)
