"""Predictions worked out by hand from the spec's numbers, past the counting layer (issue 21).

Each expected value is written as the arithmetic that produces it, from numbers quoted from hwspecs/ and
from the backend's stated constants (GPU tiles of 128 x 128, CPU blocks of 64 x 64, elementwise blocks of
1024 on GPUs/TPUs/KPUs and 16,384 on CPUs), so a wrong rounding, a sum where a max belongs or a dropped
factor of two changes a number that is pinned here.
"""

from math import ceil

import numpy as np
import pytest
from builders import init, model, save, vi
from onnx import TensorProto as T
from onnx import helper

import onnx_hwutil
from onnx_hwutil.analysis import analyze
from onnx_hwutil.hardware import load_spec
from onnx_hwutil.hardware.backends import BACKENDS, _loglog, _nearest
from onnx_hwutil.hardware.rates import rates
from onnx_hwutil.ops import Gemm

REL = 1e-9
CYCLE_V4 = 8 * 128 * 128 * 2 / 275e12  # one array cycle on TPU v4 at its cited bf16 peak, in seconds


def _conv1(tmp_path):
    """ResNet-18's first kernel: x[1,3,224,224] -> Conv 64x3x7x7 stride 2 pad 3 (+bias) -> Relu.
    MACs = 64*112*112 outputs x 3*7*7 = 802,816 x 147 = 118,013,952; FLOPs = 2 x MACs + 802,816 (bias)
    + 802,816 (Relu) = 237,633,536. At 2 bytes an element: x 150,528 x 2 = 301,056 B read, weights
    (9,408 + 64 bias) x 2 = 18,944 B, output 802,816 x 2 = 1,605,632 B written: 1,925,632 B of DRAM."""
    m = model([helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[7, 7], strides=[2, 2],
                                pads=[3, 3, 3, 3]),
               helper.make_node("Relu", ["c"], ["y"])],
              [vi("x", T.FLOAT, [1, 3, 224, 224])], [vi("y", T.FLOAT, [1, 64, 112, 112])],
              [init("w", (64, 3, 7, 7)), init("b", (64,))])
    return save(m, tmp_path / "conv1.onnx")


DRAM_16 = 301_056 + 18_944 + 1_605_632
MATRIX_FLOPS = 2 * 118_013_952
VECTOR_FLOPS = 2 * 802_816


def _one_kernel(path, chip, precision):
    [s] = analyze(path, chip, 1, precision, "runtime")
    [k] = s.kernels
    assert k.flops == MATRIX_FLOPS + VECTOR_FLOPS
    return s, k


def test_resnet18_conv1_on_h100(tmp_path):
    s, k = _one_kernel(_conv1(tmp_path), "h100-sxm5", "fp16")
    # GEMM M = 112*112 = 12,544, N = 64, K = 147: 98 x 1 tiles of 128 x 128 < 132 SMs; split-K needs K >= 256
    # per slice, so one wave of 98 blocks, each a full padded tile: 2 x 128 x 128 x 147 FLOPs at 989.4e12/132.
    matrix_s = 2 * 128 * 128 * 147 / (989.4e12 / 132)
    # Bias + Relu: 802,816 outputs in blocks of 1,024 = 784 blocks, 6 waves over 132 SMs, each block
    # 1,605,632 / 784 = 2,048 FLOPs at the fp16 vector rate 133.8e12 / 132.
    vector_s = 6 * 2048 / (133.8e12 / 132)
    assert k.compute_s == pytest.approx(matrix_s + vector_s, rel=REL)
    assert k.vector_s == pytest.approx(vector_s, rel=REL)
    assert k.memory_s == pytest.approx(DRAM_16 / 3.35e12, rel=REL)  # x is a graph input: no on-chip hit
    assert k.overhead_s == 5e-6 and k.bound == "overhead"
    assert k.latency_s == pytest.approx(max(matrix_s + vector_s, DRAM_16 / 3.35e12) + 5e-6, rel=REL)
    assert k.units == 132  # 98 blocks of GEMM, then the epilogue's 784 blocks fill every SM
    # Energy: GEMM FLOPs at the fp16 0.637 pJ, the epilogue at 4.71 pJ, DRAM at 31.76 pJ/B, idle 70 W.
    # tensor-core work at the matrix energy, CUDA-core work at vector_j_per_op.fp16 (issue 19)
    assert k.energy_compute_j == pytest.approx(MATRIX_FLOPS * 6.37e-13 + VECTOR_FLOPS * 4.71e-12, rel=REL)
    assert k.energy_dram_j == pytest.approx(DRAM_16 * 3.176e-11, rel=REL)
    assert k.energy_static_j == pytest.approx(70 * k.latency_s, rel=REL)
    assert s.to_dict()["energy_per_batch_j"] == pytest.approx(
        k.energy_compute_j + k.energy_dram_j + k.energy_static_j, rel=REL)


def test_resnet18_conv1_on_tpu_v4(tmp_path):
    _, k = _one_kernel(_conv1(tmp_path), "tpu-v4", "bf16")
    # Weight tiles: ceil(147/128) x ceil(64/128) = 2 folds on 8 MXUs, so rows split 8 // 2 = 4 ways:
    # each MXU streams ceil(12,544 / 4) = 3,136 rows; a fold costs 2 x 128 + 128 + 3,136 - 2 = 3,518 cycles.
    # A cycle is worth 8 x 128 x 128 MACs x 2 at the bf16 peak of 275e12: 1.0009 cycles of the 1.05 GHz
    # clock (the cited peak sits 0.09% under cells x 2 x clock, and the peak binds).
    matrix_s = (2 * 128 + 128 + 3136 - 2) * CYCLE_V4
    # Bias + Relu on the vector units at the fp32 rate 4.3e12 (no bf16 vector rate): 784 blocks over 8
    # units = 98 waves of 2,048 FLOPs.
    vector_s = 98 * 2048 / (4.3e12 / 8)
    assert k.compute_s == pytest.approx(matrix_s + vector_s, rel=REL)
    assert k.memory_s == pytest.approx(DRAM_16 / 1.2e12, rel=REL)
    assert k.units == 8 and k.bound == "compute"
    assert k.latency_s == pytest.approx(matrix_s + vector_s + 2e-6, rel=REL)


def test_resnet18_conv1_on_xeon(tmp_path):
    _, k = _one_kernel(_conv1(tmp_path), "xeon-8490h", "bf16")
    # 196 x 1 blocks of 64 x 64 over 60 cores (the work allows ceil(236,027,904 / 200,000) = 1,181 threads):
    # the busiest core does ceil(196 / 60) = 4 blocks of the 196 at 116.736e12 / 60 (AMX bf16).
    matrix_s = MATRIX_FLOPS * 4 / 196 / (116.736e12 / 60)
    # Epilogue: 802,816 elements fill exactly 49 blocks of 16,384, but it runs on the 60 cores the GEMM
    # occupies (a fused kernel's vector work is not held to its outputs' blocks), at the fp32 vector rate.
    vector_s = VECTOR_FLOPS / 7.296e12
    assert k.compute_s == pytest.approx(matrix_s + vector_s, rel=REL)
    assert k.memory_s == pytest.approx(DRAM_16 / 307.2e9, rel=REL)
    assert k.units == 60 and k.bound == "memory"
    assert k.latency_s == pytest.approx(DRAM_16 / 307.2e9 + 2e-6, rel=REL)


def test_resnet18_conv1_on_kpu(tmp_path):
    _, k = _one_kernel(_conv1(tmp_path), "kpu-t256", "bf16")
    # 12,544 x 64 outputs over 256 tiles of 16 PEs: 3,136 outputs a tile, 196 rounds of 16, each output
    # 147 MACs; a tile does 4.096e12 / 256 = 16 GFLOP/s at bf16.
    matrix_s = 196 * 16 * 147 * 2 / (4.096e12 / 256)
    vector_s = ceil(784 / 256) * 2048 / (2.048e12 / 256)
    # each tile's weight slice (147 x 1 x 2 B) fits half a 256 KiB scratchpad: no input re-streaming
    assert k.compute_s == pytest.approx(matrix_s + vector_s, rel=REL)
    assert k.dram_bytes == DRAM_16
    assert k.memory_s == pytest.approx(DRAM_16 / 102.4e9, rel=REL)
    assert k.units == 256 and k.bound == "compute"
    assert k.latency_s == pytest.approx(matrix_s + vector_s + 1e-5, rel=REL)


def _backend(chip, precision):
    spec = load_spec(chip)
    return BACKENDS[spec.kind](spec, rates(spec, precision))


def test_a_gpu_grid_one_block_past_a_wave_takes_a_second_wave():
    gpu = _backend("h100-sxm5", "fp16")
    block = 2 * 128 * 128 * 256 / (989.4e12 / 132)  # one full tile, K = 256
    # 132 tiles (M = 132 x 128): one wave on every SM
    assert gpu.matrix(Gemm(1, 132 * 128, 128, 256)) == (pytest.approx(block, rel=REL), 132)
    # 133 tiles: the 133rd block runs alone in a second wave
    assert gpu.matrix(Gemm(1, 133 * 128, 128, 256)) == (pytest.approx(2 * block, rel=REL), 132)
    # 33 tiles of K = 4,096: split-K into min(132 // 33, 4096 // 256) = 4 slices of 1,024 -> 132 blocks
    t, units = gpu.matrix(Gemm(1, 33 * 128, 128, 4096))
    assert units == 132 and t == pytest.approx(2 * 128 * 128 * 1024 / (989.4e12 / 132), rel=REL)


def test_a_tpu_gemm_with_more_folds_than_mxus():
    tpu = _backend("tpu-v4", "bf16")
    # K = N = 384: 3 x 3 = 9 weight tiles on 8 MXUs: the busiest MXU takes ceil(9 / 8) = 2 folds of
    # 2 x 128 + 128 + 256 - 2 = 638 cycles for M = 256.
    assert tpu.mxu_cycles(Gemm(1, 256, 384, 384)) == (2 * 638, 8)
    t, units = tpu.matrix(Gemm(1, 256, 384, 384))
    assert units == 8 and t == pytest.approx(2 * 638 * CYCLE_V4, rel=REL)
    # fp32 is emulated as 6 bf16 passes: six times the cycles
    assert _backend("tpu-v4", "fp32").matrix(Gemm(1, 256, 384, 384))[0] == pytest.approx(6 * t, rel=REL)
    # 8 folds exactly: one fold each
    assert tpu.mxu_cycles(Gemm(1, 256, 256, 512)) == (638, 8)


def test_the_elementwise_path_on_gpu_and_cpu():
    gpu = _backend("h100-sxm5", "fp16")
    # 1,048,576 elements, 1 FLOP each: 1,024 blocks of 1,024, 8 waves over 132 SMs (7 x 132 = 924 < 1,024)
    assert gpu.vector(1 << 20, 1 << 20, 1024) == (pytest.approx(8 * 1024 / (133.8e12 / 132), rel=REL), 132)
    cpu = _backend("xeon-8490h", "bf16")
    # the same on 60 cores in blocks of 16,384: 64 blocks, 2 waves (60 + 4), 16,384 FLOPs each
    assert cpu.vector(1 << 20, 1 << 20, 16384) == (pytest.approx(2 * 16384 / (7.296e12 / 60), rel=REL), 60)
    # 20,000 elements: 2 blocks of 16,384 (the last partial one costs its share), on 2 cores
    assert cpu.vector(20_000, 20_000, 16384) == (pytest.approx(10_000 / (7.296e12 / 60), rel=REL), 2)


def test_the_roofline_takes_the_larger_of_compute_and_memory(tmp_path):
    # A 4096 x 4096 fp16 GEMM on the H100: compute and memory both well above the 5 us overhead
    m = model([helper.make_node("MatMul", ["a", "W"], ["y"])], [vi("a", T.FLOAT, [4096, 4096])],
              [vi("y", T.FLOAT, [4096, 4096])], [init("W", (4096, 4096))])
    [s] = analyze(save(m, tmp_path / "g.onnx"), "h100-sxm5", None, "fp16", "runtime")
    [k] = s.kernels
    # 32 x 32 = 1,024 tiles: ceil(1,024 / 132) = 8 waves of 2 x 128 x 128 x 4,096 FLOPs
    compute = 8 * 2 * 128 * 128 * 4096 / (989.4e12 / 132)
    memory = 3 * 4096 * 4096 * 2 / 3.35e12  # A and W read, Y written
    assert (k.compute_s, k.memory_s) == (pytest.approx(compute, rel=REL), pytest.approx(memory, rel=REL))
    assert k.latency_s == pytest.approx(max(compute, memory) + 5e-6, rel=REL)
    assert s.latency_s == pytest.approx(k.latency_s, rel=REL)
    assert s.compute_utilization == pytest.approx(2 * 4096**3 / k.latency_s / 989.4e12, rel=REL)


def test_peak_memory_where_the_peak_falls_at_a_view(tmp_path):
    # x[1000] fp32 -> Reshape (a view of x: no buffer of its own) -> Add(x, view) -> y. Alive at the Add:
    # x (read through its view) and y, 4,000 B each; the Reshape's int64 target is shape data, neither a
    # weight nor an activation. Were the view its own buffer, 12,000 B.
    m = model([helper.make_node("Reshape", ["x", "s"], ["v"]), helper.make_node("Add", ["x", "v"], ["y"])],
              [vi("x", T.FLOAT, [1000])], [vi("y", T.FLOAT, [1000])],
              [init("s", (1,), value=[1000], dtype=np.int64)])
    p = onnx_hwutil.profile(save(m, tmp_path / "v.onnx"))
    assert p.totals.peak_memory_bytes == 8_000


def test_a_graph_output_stays_alive_to_the_end(tmp_path):
    # a = Relu(x) is a graph output read by nobody: it lives to the end. b = Neg(x), c = Neg(b), d = Neg(c).
    # Alive at the Neg that makes b: x, a, b = 12,000 B, and a stays: at the last step a, c, d = 12,000 B.
    m = model([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["x"], ["b"]),
               helper.make_node("Neg", ["b"], ["c"]), helper.make_node("Neg", ["c"], ["d"])],
              [vi("x", T.FLOAT, [1000])], [vi("a", T.FLOAT, [1000]), vi("d", T.FLOAT, [1000])])
    assert onnx_hwutil.profile(save(m, tmp_path / "o.onnx")).totals.peak_memory_bytes == 12_000


@pytest.mark.parametrize(("op", "per_element"), [("Relu", 1), ("Sigmoid", 4), ("Tanh", 1),
                                                  ("HardSigmoid", 3), ("HardSwish", 4), ("LeakyRelu", 2),
                                                  ("Elu", 3), ("Softplus", 3)])
def test_activation_flops_per_element(tmp_path, op, per_element):
    # The table's definitions (elementwise.py): Sigmoid = neg, exp, add, divide = 4; HardSigmoid = mul, add,
    # clip = 3; HardSwish = HardSigmoid and a multiply = 4; Elu = exp, sub, mul = 3.
    m = model([helper.make_node(op, ["x"], ["y"])], [vi("x", T.FLOAT, [7, 11])], [vi("y", T.FLOAT, [7, 11])])
    assert onnx_hwutil.profile(save(m, tmp_path / "a.onnx")).totals.flops == 77 * per_element


def test_a_fused_kernel_that_outgrows_on_chip_memory_spills_twice(tmp_path):
    # Transpose(x) -> MatMul: the runtime preset folds the transpose into the matmul's operand, so the
    # transposed 1,024 x 2,048 bf16 tensor (4 MiB) is an intermediate the matmul must read whole.
    m = model([helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0]),
               helper.make_node("MatMul", ["xt", "W"], ["y"])],
              [vi("x", T.FLOAT, [2048, 1024])], [vi("y", T.FLOAT, [1024, 1024])], [init("W", (2048, 1024))])
    [s] = analyze(save(m, tmp_path / "t.onnx"), "kpu-t256", None, "bf16", "runtime")
    [k] = s.kernels
    mib = 1 << 20
    # Working set 4 MiB x + 4 MiB W + 2 MiB y + 4 MiB intermediate = 14 MiB > the KPU's 4 MiB on chip:
    # the intermediate is written out and read back, 2 x 4 MiB.
    assert k.spill_bytes == 2 * 4 * mib
    assert s.capacity["spill_bytes"] == 8 * mib
    assert k.dram_bytes >= 4 * mib + 4 * mib + 2 * mib + 8 * mib
    # every DRAM byte costs energy, the spilled ones too: 160 pJ/B on the KPU
    assert k.energy_dram_j == pytest.approx(k.dram_bytes * 1.6e-10, rel=REL)


def test_calibration_interpolates_in_log_log():
    # Two measured points, 1e9 op/s at size 1e3 and 4e9 at 1e5: halfway in log size is the geometric
    # mean, 2e9 (a linear interpolation would say 1.27e9); outside the points the rate stays flat.
    pts = [(1e3, 1e9), (1e5, 4e9)]
    assert _loglog(pts, 1e4) == pytest.approx(2e9, rel=1e-12)
    assert _loglog(pts, 1e2) == pytest.approx(1e9, rel=1e-12)
    assert _loglog(pts, 1e7) == pytest.approx(4e9, rel=1e-12)
    # GEMMs: an exact match takes its rate; between two it is inverse-distance weighted in log2 space.
    gemms = [(64, 64, 64, 1e10), (256, 256, 256, 4e10)]
    assert _nearest(gemms, Gemm(1, 64, 64, 64)) == 1e10
    # (128, 128, 128) is 3^0.5 log2-units from each: equal weights, the geometric mean 2e10
    assert _nearest(gemms, Gemm(1, 128, 128, 128)) == pytest.approx(2e10, rel=1e-12)
    # one log2-unit per dim from 64^3, three from 1024^3: weights 1/1 : 1/3, so the log-rate is
    # (3 x log 1e10 + 1 x log 1e12) / 4, a rate of 10^10.5 (the nearer point counts three times as much)
    far = [(64, 64, 64, 1e10), (1024, 1024, 1024, 1e12)]
    assert _nearest(far, Gemm(1, 128, 128, 128)) == pytest.approx(10 ** 10.5, rel=1e-9)
