"""Cost formulas checked by hand, as pure functions of shapes."""

import pytest

from onnx_hwutil.ops import covered_ops, formula_for
from onnx_hwutil.ops.attention import attention_macs
from onnx_hwutil.ops.matrix import (
    conv_macs,
    conv_transpose_macs,
    einsum_macs,
    matmul_macs,
    rnn_macs,
)
from onnx_hwutil.ops.registry import cost


def test_conv_grouped_and_depthwise():
    # 3x3 conv 64->128 on 56x56: each output sums 64*9 products
    assert conv_macs((128, 64, 3, 3), (1, 128, 56, 56)) == 128 * 56 * 56 * 64 * 9
    # depthwise 32 channels: one input channel per output
    assert conv_macs((32, 1, 3, 3), (2, 32, 10, 10)) == 2 * 32 * 100 * 9
    # 1-D and 3-D convolutions use the same rule
    assert conv_macs((16, 8, 5), (1, 16, 100)) == 16 * 100 * 8 * 5
    assert conv_macs((4, 2, 3, 3, 3), (1, 4, 8, 8, 8)) == 4 * 512 * 2 * 27


def test_conv_transpose_scatters_each_input():
    # x[1,16,8,8], W[16, 8/g=8, 4,4]: every input element touches 8*16 outputs
    assert conv_transpose_macs((1, 16, 8, 8), (16, 8, 4, 4)) == 16 * 64 * 8 * 16


def test_matmul_broadcast_and_vectors():
    assert matmul_macs((2, 12, 128, 64), (2, 12, 128, 128)) == 2 * 12 * 128 * 128 * 64
    assert matmul_macs((64,), (10,)) == 10 * 64  # vector @ matrix
    assert matmul_macs((7, 64), (7,)) == 7 * 64  # matrix @ vector
    assert matmul_macs((5, 3), (1, 3, 3), trans_a=True) == 9 * 5


@pytest.mark.parametrize("eq, shapes, macs", [
    ("ij,jk->ik", [(3, 4), (4, 5)], 3 * 4 * 5),
    ("bhqd,bhkd->bhqk", [(2, 12, 128, 64), (2, 12, 128, 64)], 2 * 12 * 128 * 128 * 64),
    ("...ij,...jk", [(6, 3, 4), (4, 5)], 6 * 3 * 4 * 5),
    ("i,i->", [(10,), (10,)], 10),
    # left to right: (ij,jk->ik) then (ik,kl->il)
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)], 2 * 3 * 4 + 2 * 4 * 5),
])
def test_einsum(eq, shapes, macs):
    assert einsum_macs(eq, shapes) == (macs, 2 * macs)


def test_einsum_single_operand_is_not_matrix_work():
    assert einsum_macs("ij->ji", [(3, 4)]) == (0, 0)
    assert einsum_macs("ij->i", [(3, 4)]) == (0, 12)


def test_rnn_macs():
    # LSTM: 4 gates, each H x (input + H) per step, batch and direction
    assert rnn_macs("LSTM", seq=10, batch=2, dirs=1, input_size=32, hidden=64) == 10 * 2 * 4 * 64 * (32 + 64)
    assert rnn_macs("GRU", 5, 1, 2, 8, 16) == 5 * 2 * 3 * 16 * 24


def test_attention_macs():
    # BERT-base layer at seq 128: QK^T and AV over 12 heads of 64
    assert attention_macs(1, 128, 128, 768, 768) == 2 * 12 * 128 * 128 * 64


def test_registry_refuses_a_second_formula():
    with pytest.raises(RuntimeError, match="registered twice"):
        cost("Conv")(lambda ctx: None)


def test_registry_covers_the_issue_list():
    wanted = ["Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum", "LSTM", "GRU", "RNN", "ConvInteger",
              "MatMulInteger", "QLinearConv", "QLinearMatMul", "BatchNormalization", "LayerNormalization",
              "Softmax", "LogSoftmax", "Transpose", "Concat", "Split", "Slice", "Gather", "GatherElements",
              "GatherND", "ScatterElements", "ScatterND", "Pad", "Resize", "Expand", "Tile", "Where", "TopK",
              "NonMaxSuppression", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Shape", "Identity", "Cast",
              "QuantizeLinear", "DequantizeLinear", "Constant", "ConstantOfShape", "Range", "If", "Loop",
              "Scan", "ReduceMean", "MaxPool", "GlobalAveragePool", "Relu", "Sigmoid", "Erf"]
    for op in wanted:
        assert formula_for("", op) is not None, op
    for op in ["DynamicQuantizeLSTM", "Attention", "MultiHeadAttention", "FusedMatMul", "QuickGelu",
               "SkipLayerNormalization", "FusedConv", "Gelu", "BiasGelu", "MatMulNBits"]:
        assert formula_for("com.microsoft", op) is not None, op
    assert len(covered_ops()) > 150


def test_einsum_without_summation_is_elementwise():
    assert einsum_macs("ij,ij->ij", [(3, 4), (3, 4)]) == (0, 12)
    assert einsum_macs("bi,i->bi", [(2, 5), (5,)]) == (0, 10)
