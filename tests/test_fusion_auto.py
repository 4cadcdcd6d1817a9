"""`--fusion auto`: each chip kind fused by the rules of the runtime deployed there, named in the output."""

import json

import pytest
from conftest import model_path
from typer.testing import CliRunner

from onnx_hwutil.analysis import Analyzer, Point
from onnx_hwutil.cli import app
from onnx_hwutil.diff import diff
from onnx_hwutil.errors import HwUtilError
from onnx_hwutil.fusion import AUTO, for_chip, fuse, resolve_passes, what_ifs
from onnx_hwutil.hardware import load_spec
from onnx_hwutil.profile import profile


def test_auto_is_the_runtime_of_each_chip_kind():
    assert [for_chip("auto", k) for k in ("cpu", "gpu", "tpu", "kpu")] == [
        "runtime", "tensorrt", "xla", "xla"]
    assert for_chip("none", "gpu") == "none" and for_chip("aggressive", "cpu") == "aggressive"
    assert resolve_passes("auto")[0] == "runtime"  # no chip: ONNX Runtime's CPU rules
    with pytest.raises(HwUtilError, match="presets: auto, none, runtime, tensorrt, xla, aggressive"):
        resolve_passes("trt")


def test_every_chip_kind_has_a_preset():
    from onnx_hwutil.hardware.catalog import bundled_specs
    from onnx_hwutil.hardware.spec import KINDS

    assert set(KINDS) == set(AUTO) and {load_spec(n).kind for n in bundled_specs()} <= set(AUTO)


@pytest.mark.parametrize("hw, preset, kernels", [
    ("xeon-8490h", "runtime", 211), ("h100-sxm5", "tensorrt", 158), ("tpu-v4", "xla", 182),
    ("kpu-t256", "xla", 182)])
def test_analyze_names_the_preset_each_chip_ran(hw, preset, kernels):
    a = Analyzer()
    s = a.run(Point(model_path("bert_base"), hw, 1, "auto", "auto"))
    assert (s.fusion, len(s.kernels)) == (preset, kernels)
    # an explicit preset is taken as given on every chip
    assert a.run(Point(model_path("bert_base"), hw, 1, "auto", "none")).fusion == "none"


def test_tensorrt_fuses_attention_and_norms_where_ort_does_not():
    p = profile(model_path("bert_base"))
    rt, trt, xla = (fuse(p, f) for f in ("runtime", "tensorrt", "xla"))
    labels = {f.preset: [k.label for k in f.kernels] for f in (rt, trt, xla)}
    assert sum(lb.startswith("Attention") for lb in labels["tensorrt"]) == 12
    assert not any(lb.startswith("Attention") for lb in labels["runtime"] + labels["xla"])
    assert trt.totals["dram_bytes"] < xla.totals["dram_bytes"] < rt.totals["dram_bytes"]


def test_cnn_kernels_are_the_same_under_ort_and_tensorrt():
    # ResNet's conv + residual Add + Relu is one kernel in both (NCHWc on a CPU, the epilogue on a GPU)
    p = profile(model_path("resnet18"))
    assert len(fuse(p, "runtime").kernels) == len(fuse(p, "tensorrt").kernels) == 23


def test_what_ifs_are_the_chips_own_rules_between_the_ends():
    assert what_ifs("tensorrt") == ["none", "tensorrt", "aggressive"]
    assert what_ifs("runtime") == ["none", "runtime", "aggressive"]
    assert what_ifs("none") == ["none", "aggressive"]


def test_diff_pairs_kernels_under_each_chips_preset():
    m = model_path("resnet18")
    d = diff(m, m, ["xeon-8490h", "h100-sxm5"], batch=1)
    assert d["settings"]["presets"] == ["runtime", "tensorrt"]
    assert d["kernels"] == [] and not d["changed"]


def test_cli_json_says_which_preset_ran():
    r = CliRunner().invoke(app, ["analyze", model_path("resnet18"), "--hw", "h100-sxm5,xeon-8490h", "--batch",
                                 "1", "--no-findings", "-f", "json"])
    assert r.exit_code == 0, r.output
    runs = json.loads(r.stdout)
    runs = runs["results"] if isinstance(runs, dict) else runs
    assert {x["hardware"]: x["fusion"] for x in runs} == {"h100-sxm5": "tensorrt", "xeon-8490h": "runtime"}
