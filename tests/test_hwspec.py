"""Hardware specs: every bundled number is cited or marked assumed; bad specs are one clear line."""

import copy

import pytest
import yaml
from typer.testing import CliRunner

from onnx_hwutil.cli import app
from onnx_hwutil.errors import HwUtilError
from onnx_hwutil.hardware import bundled_specs, load_spec
from onnx_hwutil.hardware.catalog import HWSPEC_DIR
from onnx_hwutil.hardware.spec import parse

REQUIRED = {"xeon-8490h", "h100-sxm5", "h100-pcie", "tpu-v4", "kpu-t256", "kendryte-k210", "a100-sxm4",
            "jetson-orin-agx"}


def test_bundled_specs_load_and_cite_everything():
    assert set(bundled_specs()) >= REQUIRED
    for name in bundled_specs():
        s = load_spec(name)
        assert s.name == name
        assert s.sources, name
        for where, c in s.sources.items():
            assert len(c.source) >= 8, (name, where)


def test_primary_figures():
    h100 = load_spec("h100-sxm5")
    assert h100.units == 132
    assert (h100.peak_ops_per_s["fp16"], h100.peak_ops_per_s["int8"]) == (989.4e12, 1978.9e12)  # dense
    assert h100.dram_bandwidth == 3.35e12 and h100.tdp_w == 700
    tpu = load_spec("tpu-v4")
    assert tpu.units == 8 and tpu.peak_ops_per_s["bf16"] == 275e12
    assert "fp32" not in tpu.peak_ops_per_s and tpu.emulated["fp32"][0] == "bf16"  # no native fp32 matmul
    xeon = load_spec("xeon-8490h")
    # 60 cores x 64 FP32 FLOP/cycle (2 AVX-512 FMA units) x 1.9 GHz
    assert xeon.vector_ops_per_s["fp32"] == pytest.approx(60 * 64 * 1.9e9, rel=1e-3)
    kpu = load_spec("kpu-t256")
    assert all(c.assumed for c in kpu.sources.values())  # no silicon: every number is an assumption
    k = kpu.backend
    assert kpu.peak_ops_per_s["int8"] == pytest.approx(
        kpu.units * k.pes_per_tile * k.macs_per_pe_per_cycle * 2 * kpu.clock_hz)
    assert load_spec("kendryte-k210").peak_ops_per_s["int8"] < 1e12  # the real K210 is a sub-TOPS chip


def _base():
    with open(f"{HWSPEC_DIR}/h100-sxm5.yaml") as f:
        return yaml.safe_load(f)


@pytest.mark.parametrize("mutate, field, reason", [
    (lambda d: d.update(color="green"), "color", "unknown field"),
    (lambda d: d["memory"].pop("onchip_bytes"), "memory.onchip_bytes", "missing"),
    (lambda d: d["power"]["tdp_w"].update(value=-5), "power.tdp_w", "positive"),
    (lambda d: d["clock_hz"].pop("source"), "clock_hz", "exactly one of 'source'"),
    (lambda d: d["power"]["idle_w"].update(value=900), "power.idle_w", "exceeds TDP"),
    (lambda d: d["peak_ops_per_s"].update(fp64={"value": 1, "source": "made up here"}), "peak_ops_per_s.fp64",
     "unknown precision"),
    (lambda d: d.update(kind="fpga"), "kind", "expected one of"),
    (lambda d: d["units"]["count"].update(value=13.5), "units.count", "whole number"),
    (lambda d: d["clock_hz"].update(value="fast"), "clock_hz", "not a number"),
])
def test_bad_fields_name_file_field_and_reason(mutate, field, reason):
    d = copy.deepcopy(_base())
    mutate(d)
    with pytest.raises(HwUtilError) as e:
        parse(d, "my-chip.yaml")
    msg = str(e.value)
    assert msg.startswith(f"my-chip.yaml: field '{field}'") and reason in msg, msg


def test_numbers_written_as_yaml_strings_are_accepted():
    d = _base()
    d["clock_hz"]["value"] = "1.83e9"  # YAML 1.1 reads this as a string
    assert parse(d, "x.yaml").clock_hz == 1.83e9


def test_cli_hw_list_show_and_a_users_spec(tmp_path):
    r = CliRunner().invoke(app, ["hw", "list"])
    assert r.exit_code == 0 and "h100-sxm5" in r.stdout and "989 TOP/s" not in r.stdout
    r = CliRunner().invoke(app, ["hw", "show", "tpu-v4"])
    assert r.exit_code == 0 and "Jouppi" in r.stdout
    bad = tmp_path / "chip.yaml"
    bad.write_text("name: x\nkind: gpu\n")
    r = CliRunner().invoke(app, ["hw", "show", str(bad)])
    assert r.exit_code == 2 and "chip.yaml: field 'title': missing" in r.stderr
    r = CliRunner().invoke(app, ["hw", "show", "no-such-chip"])
    assert r.exit_code == 2 and "unknown hardware 'no-such-chip'" in r.stderr


def test_host_is_read_from_this_machine():
    import os

    host = load_spec("host")
    assert host.kind == "cpu" and host.units == os.cpu_count()
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    simd = 512 if "avx512f" in flags else 256 if "avx2" in flags or " avx " in flags else 128
    assert host.backend.simd_bits == simd
    assert host.vector_ops_per_s["fp32"] == pytest.approx(
        host.units * simd / 32 * 2 * host.backend.fma_units_per_core * host.clock_hz)
    assert host.sources["memory.dram_bandwidth_bytes_per_s"].assumed  # until calibrate measures it
    assert host.sources["units.count"].source.startswith("detected at run time")
