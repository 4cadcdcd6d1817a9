"""The hardware catalog people choose from (issue 19): filters, side by side, a user's spec checked."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from onnx_hwutil.cli import app
from onnx_hwutil.hardware import bundled_specs, load_spec
from onnx_hwutil.hardware.catalog import HWSPEC_DIR
from onnx_hwutil.report.hardware_view import tpu_peaks_agree
from onnx_hwutil.units import parse_bytes


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_every_bundled_chip_is_consistent():
    for name in bundled_specs():
        s = load_spec(name)
        for p, sparse in s.sparse_peak_ops_per_s.items():
            # 2:4 sparsity doubles at most; the dense figure is the one predictions use
            # (datasheets round: 1,979 sparse is 2 x 989.4 dense, 67 TOPS is 2 x 33.4)
            assert p in s.peak_ops_per_s and sparse <= 2.01 * s.peak_ops_per_s[p], (name, p)
        assert s.idle_w < s.tdp_w and s.dram_capacity > s.onchip_bytes, name
        if s.kind == "tpu":  # a systolic array's peaks are its cells x 2 x clock x 1, 2 or 4
            assert tpu_peaks_agree(s), name


def test_list_filters_and_sorts():
    r = _run("hw", "list", "--kind", "gpu", "--sort", "bandwidth", "-f", "json")
    rows = json.loads(r.stdout)
    assert rows and {x["kind"] for x in rows} == {"gpu"}
    bws = [x["dram_bandwidth_bytes_per_s"] for x in rows]
    assert bws == sorted(bws, reverse=True)
    r = _run("hw", "list", "--precision", "fp8", "--min-memory", "80GB", "-f", "json")
    rows = json.loads(r.stdout)
    assert rows and all("fp8" in x["precisions"] and x["dram_capacity_bytes"] >= 80e9 for x in rows)
    assert "h100-sxm5" in {x["name"] for x in rows} and "a100-sxm4" not in {x["name"] for x in rows}
    assert _run("hw", "list", "--kind", "fpga").exit_code == 2
    assert _run("hw", "list", "--min-memory", "lots").exit_code == 2


def test_sizes_parse_as_vendors_print_them():
    assert parse_bytes("80GB", "f") == 80e9 and parse_bytes("64GiB", "f") == 64 * 2**30
    assert parse_bytes("8e10", "f") == 8e10 and parse_bytes("512 MB", "f") == 512e6


def test_show_side_by_side_marks_assumed_numbers():
    r = _run("hw", "show", "h100-sxm5", "tpu-v4")
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["h100-sxm5", "tpu-v4"]
    bf16 = next(x for x in lines if x.startswith("peak bf16"))
    assert "989 TOP/s" in bf16 and "275 TOP/s" in bf16
    overhead = next(x for x in lines if x.startswith("per-kernel overhead"))
    assert overhead.count("*") == 2  # both chips' launch costs are assumptions
    assert "NVLink 4 450 GB/s" in next(x for x in lines if x.startswith("interconnect"))


def test_check_a_users_spec(tmp_path):
    with open(f"{HWSPEC_DIR}/tpu-v4.yaml") as f:
        data = yaml.safe_load(f)
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data))
    r = _run("hw", "check", path)
    assert r.exit_code == 0 and "valid (tpu-v4, tpu); 26 numbers, 8 assumed" in r.stdout
    assert "vector_ops_per_s.fp32" in r.stdout and "absent (optional): sparse_peak_ops_per_s" in r.stdout
    assert _run("hw", "check", path, "--strict").exit_code == 1
    # a clock that does not give the stated peak is named
    data["clock_hz"]["value"] = 1.6e9  # 8 arrays of 128x128 at 1.6 GHz: 419 TOP/s; 275 is no step of it
    path.write_text(yaml.safe_dump(data))
    warning = "warning: 8 arrays x 128x128 MACs x 2 x clock = 419 TOP/s, but the peaks are bf16 275 TOP/s"
    assert warning in _run("hw", "check", path).stdout
    # a missing field is a schema error: one line, exit 2
    del data["kernel_overhead_s"]
    path.write_text(yaml.safe_dump(data))
    r = _run("hw", "check", path)
    assert r.exit_code == 2 and "field 'kernel_overhead_s': missing" in r.stderr


def test_a_backends_limits_on_a_chip_reach_every_result(tmp_path):
    with open(f"{HWSPEC_DIR}/h100-sxm5.yaml") as f:
        data = yaml.safe_load(f)
    data["name"] = "some-gpu"
    data["modeling"] = "wavefront-64 matrix cores modelled as 128x128 tiles"
    path = tmp_path / "some-gpu.yaml"
    path.write_text(yaml.safe_dump(data))
    from builders import conv_relu, save

    from onnx_hwutil.analysis import analyze

    [s] = analyze(save(conv_relu(), tmp_path / "m.onnx"), str(path), 1)
    assert "some-gpu: wavefront-64 matrix cores modelled as 128x128 tiles" in s.notes


def test_the_catalog_covers_what_people_deploy_on():
    wanted = {"b200", "h200-sxm", "h100-sxm5", "h100-pcie", "l40s", "l4", "a100-sxm4", "a100-sxm4-40gb",
              "a10g", "t4", "rtx-4090", "jetson-orin-agx", "jetson-orin-nano", "mi300x", "mi250x", "gaudi3",
              "tpu-v4",
              "tpu-v5e", "tpu-v5p", "tpu-v6e", "inferentia2", "trainium1", "apple-m4-ane", "hexagon-8gen3",
              "xeon-6980p", "xeon-8490h", "epyc-9654", "epyc-9965", "graviton4", "raspberry-pi-5"}
    assert wanted <= set(bundled_specs()) and len(bundled_specs()) >= 25
    # a chip modelled through another kind's backend says so in every result
    for name in ("mi300x", "gaudi3", "inferentia2", "apple-m4-ane"):
        assert load_spec(name).modeling, name


def test_corrections_found_by_checking_each_number_against_its_source():
    """Issue 19's list of corrections, one assertion each (the sources are in the files)."""
    from onnx_hwutil.hardware.rates import rates

    orin = load_spec("jetson-orin-agx")  # DS-10662-001: 85 sparse fp16 TFLOPS (tensor), 10.649 (CUDA cores)
    assert not orin.sources["peak_ops_per_s.fp16"].assumed and orin.peak_ops_per_s["fp16"] == 42.5e12
    assert orin.vector_ops_per_s["fp16"] == 10.649e12 and rates(orin, "fp16").vector_ops_per_s == 10.649e12
    xeon = load_spec("xeon-8490h")  # AVX512-FP16: fp16 models run (on the vector units), not refused
    r = rates(xeon, "fp16")
    assert r.matrix_units == "vector"
    assert r.vector_ops_per_s == pytest.approx(2 * xeon.vector_ops_per_s["fp32"])
    k210 = load_spec("kendryte-k210")  # 6 MiB general SRAM holds weights; the 2 MiB AI SRAM counted once
    assert k210.dram_capacity == 6 * 2**20 and k210.onchip_bytes == 2 * 2**20
    assert "16-bit" in k210.sources["peak_ops_per_s.int8"].source
    tpu = load_spec("tpu-v4")  # no int8 x int8 MXU mode: int8 no faster than bf16; VMEM cited (JAX tpu_info)
    assert tpu.peak_ops_per_s["int8"] == tpu.peak_ops_per_s["bf16"]
    assert not tpu.sources["backend.tpu.vmem_bytes_per_tensorcore"].assumed
    assert "one pass" in tpu.sources["emulated.fp32.slowdown"].source.lower()
    h100 = load_spec("h100-sxm5")  # the device reports 81559 MiB; the clock cites a page that says 1.83 GHz
    assert h100.dram_capacity == 81559 * 2**20 and "forums.developer" not in h100.sources["clock_hz"].source
    for name in bundled_specs():  # one label for the same generic figure: assumed everywhere
        assert load_spec(name).sources["energy.j_per_dram_byte"].assumed, name
    # capacities as the device reports them where a report was found (nvidia-smi MiB, HIP's total) ...
    reported = {"rtx-4090": 24564 * 2**20, "a10g": 23028 * 2**20, "b200": 183359 * 2**20,
                "h200-sxm": int(139.75 * 2**30), "mi300x": 196592 * 2**20}
    def capacity_source(name):
        return load_spec(name).sources["memory.dram_capacity_bytes"].source.lower()

    for name, nbytes in reported.items():
        assert load_spec(name).dram_capacity == nbytes and "what the device reports" in capacity_source(name)
    # ... and the decimal marketing figure, said to be one, where none was
    for name in ("h100-pcie", "gaudi3"):
        assert "marketing figure" in capacity_source(name), name


def test_vector_work_is_priced_at_the_vector_units_energy():
    """CUDA-core fp16 costs what the file derives for CUDA cores (A100: ~4.6 pJ), not tensor cores' 1.15."""
    from onnx_hwutil.hardware.rates import rates

    a100 = rates(load_spec("a100-sxm4"), "fp16")
    assert a100.matrix_j_per_op == pytest.approx(1.154e-12)
    assert a100.vector_j_per_op == pytest.approx(4.62e-12)
    for name in bundled_specs():  # wherever a precision's vector units differ from its matrix units
        s = load_spec(name)
        for p in set(s.peak_ops_per_s) & set(s.vector_ops_per_s):
            if s.vector_ops_per_s[p] != s.peak_ops_per_s[p]:
                assert p in s.vector_j_per_op, (name, p)
                assert rates(s, p).vector_j_per_op == s.vector_j_per_op[p], (name, p)
