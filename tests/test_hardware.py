"""Hardware mapping: invariants over every bundled model x chip x precision x batch, and each backend's
arithmetic checked by hand."""

from dataclasses import replace
from math import ceil

import pytest
from conftest import BUNDLED, model_path
from typer.testing import CliRunner

from onnx_hwutil.analysis import Analyzer, Point
from onnx_hwutil.cli import app
from onnx_hwutil.hardware import bundled_specs, load_spec
from onnx_hwutil.hardware.backends import CpuBackend, GpuBackend, KpuBackend, TpuBackend
from onnx_hwutil.hardware.rates import rates
from onnx_hwutil.ops import Gemm


@pytest.fixture(scope="module")
def analyzer():
    return Analyzer()


@pytest.mark.parametrize("name", BUNDLED)
def test_invariants(analyzer, name):
    for hw in bundled_specs():
        spec = load_spec(hw)
        for prec in spec.precisions:
            prev = None
            for batch in (1, 8, 64):
                s = analyzer.run(Point(model_path(name), hw, batch, prec, "runtime"))
                where = (name, hw, prec, batch)
                assert s.latency_s > 0, where
                assert s.attained_ops_per_s <= s.rates.peak_ops_per_s * (1 + 1e-9), where
                assert 0 <= s.compute_utilization <= 1 and 0 <= s.memory_bandwidth_utilization <= 1, where
                for k in s.kernels:
                    assert 1 <= k.units <= spec.units, (where, k)
                    assert k.energy_j >= spec.idle_w * k.latency_s, (where, k)
                assert s.energy["total_j"] >= spec.idle_w * s.latency_s
                assert s.energy["static_j"] == pytest.approx(spec.idle_w * s.latency_s)
                if prev is not None and s.throughput_per_s < prev.throughput_per_s:
                    # Only a modeled capacity cliff may make a larger batch slower: activations that fit
                    # on chip at the smaller batch no longer do, or a fused kernel starts to spill.
                    cliff = (s.capacity["onchip_hit_fraction"] < prev.capacity["onchip_hit_fraction"]
                             or s.capacity["spill_bytes"] / batch > prev.capacity["spill_bytes"] / prev.batch)
                    assert cliff, (where, prev.throughput_per_s, s.throughput_per_s)
                prev = s


def test_gpu_waves_on_h100():
    spec = load_spec("h100-sxm5")
    gpu = GpuBackend(spec, rates(spec, "fp16"))
    per_sm = 989.4e12 / 132
    # 8192^3: 64 x 64 = 4096 output tiles of 128x128 over 132 SMs = 32 waves (the last one 3% full)
    t, units = gpu.matrix(Gemm(1, 8192, 8192, 8192))
    assert units == 132
    assert t == pytest.approx(32 * 2 * 128 * 128 * 8192 / per_sm)
    # batch-1 classifier 2048 -> 1000: one row, so 16-row tiles (the smallest MMA), 8 of them, K split 8 ways
    # (2048 / 256) so 64 SMs work, one wave of 16 x 128 x 256 blocks
    t, units = gpu.matrix(Gemm(1, 1, 1000, 2048))
    assert units == 64
    assert t == pytest.approx(2 * 16 * 128 * 256 / per_sm)
    # 17 rows is past the small tile: a full 128-row tile again
    assert gpu.matrix(Gemm(1, 17, 1000, 2048))[0] == pytest.approx(2 * 128 * 128 * 256 / per_sm)
    # a decode step's projection (one token, 4096 -> 4096): 32 tiles of 16 rows, K split 4 ways, 128 SMs
    t, units = gpu.matrix(Gemm(1, 1, 4096, 4096))
    assert units == 128 and t == pytest.approx(2 * 16 * 128 * 1024 / per_sm)


def test_one_mxu_for_a_128_cube():
    spec = load_spec("tpu-v4")
    tpu = TpuBackend(spec, rates(spec, "bf16"))
    cycles, units = tpu.mxu_cycles(Gemm(1, 128, 128, 128))
    assert units == 1  # one weight tile, and its 128 rows are a single pass: nothing to split
    assert cycles == 128 + 128 + 128 + 128 - 2  # load weights, stream 128 rows, skew and drain
    # 510 cycles at 1.05 GHz, slowed by the 0.09% the cited 275 TFLOPS sits under 8 x 128^2 x 2 x 1.05 GHz
    assert tpu.matrix(Gemm(1, 128, 128, 128))[0] == pytest.approx(510 / 1.05e9 * 275.25e12 / 275e12, rel=1e-3)
    # fp32 is emulated with 6 bf16 passes
    fp32 = TpuBackend(spec, rates(spec, "fp32"))
    assert fp32.matrix(Gemm(1, 128, 128, 128))[0] == pytest.approx(6 * 510 / 1.05e9, rel=1e-3)


def test_kpu_scratchpad_overflow_refetches_inputs():
    spec = load_spec("kpu-t256")
    kpu = KpuBackend(spec, rates(spec, "bf16"))
    # K=4096: each tile's weight slice is 4096 x 16 channels x 2 B = 128 KiB = half the scratchpad: fits
    assert kpu.refetch_bytes(Gemm(1, 64, 4096, 4096), 2) == 0
    # K=8192: 256 KiB, two passes, so the 64 x 8192 input is streamed from DRAM once more
    assert kpu.refetch_bytes(Gemm(1, 64, 4096, 8192), 2) == 64 * 8192 * 2
    t, units = kpu.matrix(Gemm(1, 64, 4096, 8192))
    assert units == 256
    per_tile = 4.096e12 / 256
    assert t == pytest.approx(ceil(ceil(64 * 4096 / 256) / 16) * 16 * 8192 * 2 / per_tile)


def test_conv_split_over_cpu_cores():
    spec = load_spec("xeon-8490h")
    cpu = CpuBackend(spec, rates(spec, "bf16"))
    # ResNet layer1 3x3 conv 64->64 on 56x56: M = 3136, N = 64, K = 576 -> 49 row blocks of 64
    t, units = cpu.matrix(Gemm(1, 3136, 64, 576))
    assert units == 49
    flops = 2 * 3136 * 64 * 576
    assert t == pytest.approx(flops / 49 / (spec.peak_ops_per_s["bf16"] / 60))
    # a tiny GEMM is not worth more than one thread
    assert cpu.matrix(Gemm(1, 8, 8, 8))[1] == 1


def test_unsupported_precision_names_what_the_chip_runs():
    r = CliRunner().invoke(app, ["analyze", model_path("resnet18"), "--hw", "tpu-v4", "--precision", "fp8"])
    assert r.exit_code == 2
    assert "tpu-v4 cannot run fp8; it runs: fp32, bf16, int8" in r.stderr


def test_analyze_json_contract():
    r = CliRunner().invoke(app, ["analyze", model_path("resnet50"), "--hw", "h100-sxm5,tpu-v4",
                                 "--batch", "1,8", "--format", "json", "--per-subgraph"])
    assert r.exit_code == 0, r.output
    import json

    entries = json.loads(r.stdout)
    assert [(e["hardware"], e["batch"]) for e in entries] == [("h100-sxm5", 1), ("h100-sxm5", 8),
                                                             ("tpu-v4", 1), ("tpu-v4", 8)]
    e = entries[0]
    for key in ("hardware", "precision", "batch", "fusion", "latency_s", "throughput_per_s",
                "compute_utilization", "memory_bandwidth_utilization", "attained_ops_per_s", "peak_ops_per_s",
                "units_allocated", "energy_per_batch_j", "energy_per_inference_j", "bound_share",
                "subgraphs"):
        assert key in e, key
    assert set(e["units_allocated"]) >= {"mean", "max", "total"} and e["units_allocated"]["total"] == 132
    assert e["throughput_per_s"] == pytest.approx(1 / e["latency_s"])
    assert sum(s["latency_s"] for s in e["subgraphs"]) == pytest.approx(e["latency_s"])
    assert all(s["units"] >= 1 for s in e["subgraphs"])  # never "0/132 SMs" for a kernel that ran


def test_compare_reproduces_the_report_layout():
    r = CliRunner().invoke(app, ["compare", model_path("resnet18"), model_path("resnet50")])
    assert r.exit_code == 0, r.output
    out = r.stdout
    for fragment in ("## Model characteristics", "| ratio", "2.26x", "xeon-8490h", "h100-sxm5", "kpu-t256",
                     "tpu-v4", "Compute util", "Mem BW util", "SMs allocated", "MXUs allocated",
                     "## Best hardware", "## Throughput vs latency", "Energy / inference"):
        assert fragment in out, fragment


def test_analyze_without_a_batch_uses_the_models_own_shapes(tmp_path):
    from builders import conv_relu, save

    from onnx_hwutil.analysis import analyze

    fixed = save(conv_relu(batch=4), tmp_path / "fixed.onnx")  # static batch 4: no symbol to bind
    [s] = analyze(fixed, "h100-sxm5")
    assert s.batch == 4 and s.flops == 4 * (2 * 8 * 32 * 32 * 27 + 2 * 8 * 32 * 32)
    assert s.throughput_per_s == pytest.approx(4 / s.latency_s)
    [s] = analyze(save(conv_relu(), tmp_path / "dyn.onnx"), "h100-sxm5")  # symbolic N: batch 1
    assert s.flops == 2 * 8 * 32 * 32 * 27 + 2 * 8 * 32 * 32


def test_attention_products_with_one_row_run_on_the_vector_units_of_a_systolic_chip():
    spec = load_spec("tpu-v4")
    tpu = TpuBackend(spec, rates(spec, "bf16"))
    # a decode step's Q K^T: 32 heads x 8 sequences, one query row each, against 192 cached keys
    one_row = Gemm(256, 1, 192, 128, weight_stationary=False)
    vector = 2 * 256 * 1 * 192 * 128 / rates(spec, "bf16").vector_ops_per_s
    assert tpu.matrix(one_row) == (pytest.approx(vector), tpu.units)
    # the same product with a real weight keeps the array: weights stay where they are loaded
    cycles, _ = tpu.mxu_cycles(replace(one_row, weight_stationary=True))
    assert tpu.matrix(replace(one_row, weight_stationary=True))[0] == pytest.approx(
        cycles * tpu.slowdown / spec.clock_hz)
    # a prefill's 128-row attention product is faster in the array, so it stays there
    full = Gemm(256, 128, 128, 128, weight_stationary=False)
    assert tpu.matrix(full) == tpu.matrix(replace(full, weight_stationary=True))
