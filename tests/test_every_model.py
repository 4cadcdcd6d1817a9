"""Every real model through every command (issue 12): bindings everywhere, per model; fixed-batch files
re-batched; sweep's exit codes. Each test runs the real command on a model built here."""

import json

import numpy as np
import pytest
from builders import init, model, save, vi
from onnx import TensorProto as T
from onnx import helper
from typer.testing import CliRunner

import onnx_hwutil
from onnx_hwutil.cli import app


def _detector(tmp_path, name="detector.onnx", input_name="images"):
    """A detector-class model with dynamic H/W: [batch, 3, height, width] -> strided Conv -> SiLU."""
    m = model([helper.make_node("Conv", [input_name, "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                strides=[2, 2]),
               helper.make_node("Sigmoid", ["c"], ["s"]), helper.make_node("Mul", ["c", "s"], ["y"])],
              [vi(input_name, T.FLOAT, ["batch", 3, "height", "width"])],
              [vi("y", T.FLOAT, ["batch", 16, "h2", "w2"])], [init("w", (16, 3, 3, 3))])
    return save(m, tmp_path / name)


def _classifier(tmp_path, name="cls.onnx", batch=1):
    """A classifier exported with its batch fixed, legacy-style: Reshape(x, [1, -1]) before the head."""
    m = model([helper.make_node("Conv", ["input", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
               helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["p"]),
               helper.make_node("Reshape", ["p", "s"], ["f"], name="view"),
               helper.make_node("Gemm", ["f", "fw"], ["y"], transB=1)],
              [vi("input", T.FLOAT, [batch, 3, 32, 32])], [vi("y", T.FLOAT, [batch, 10])],
              [init("w", (16, 3, 3, 3)), init("s", (2,), np.int64, [batch, -1]), init("fw", (10, 16))])
    return save(m, tmp_path / name)


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


# detector MACs at batch 1, 640 x 640: 16 x 320 x 320 outputs x 27
DET_MACS = 16 * 320 * 320 * 27


def test_sweep_compare_and_report_take_bindings_for_the_models_that_have_them(tmp_path):
    det, cls = _detector(tmp_path), _classifier(tmp_path)
    r = _run("sweep", det, cls, "--hw", "h100-sxm5", "--batch", "1,4", "--dim", "height=640", "--dim",
             "width=640", "-f", "jsonl")
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert all(x["ok"] for x in rows) and len(rows) == 4
    det1 = next(x for x in rows if x["model"] == det and x["batch"] == 1)
    assert det1["flops"] == 2 * DET_MACS + 16 * 320 * 320 * (4 + 1)  # conv, Sigmoid 4, Mul 1
    r = _run("compare", det, cls, "--hw", "h100-sxm5", "--shape", "images=1x3x640x640", "-f", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["characteristics"]["detector"]["macs"] == DET_MACS
    r = _run("report", det, cls, "--hw", "h100-sxm5", "--dim", "height=640", "--dim", "width=640",
             "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    study = json.loads((tmp_path / "out" / "report.json").read_text())
    assert study["models"][0]["characteristics"]["macs"] == DET_MACS
    assert {x["batch"] for x in study["sweep"] if x["ok"] and x["model"] == "detector"} >= {1, 8, 64}


def test_a_binding_no_model_has_is_an_error(tmp_path):
    det, cls = _detector(tmp_path), _classifier(tmp_path)
    for cmd in (["compare", det, cls], ["sweep", det, cls], ["diff", det, det]):
        r = _run(*cmd, "--hw", "h100-sxm5", "--shape", "imgs=1x3x64x64")
        assert r.exit_code == 2 and "no input 'imgs' in any of the models" in r.stderr, (cmd, r.output)
        r = _run(*cmd, "--hw", "h100-sxm5", "--dim", "heigth=64")
        assert r.exit_code == 2 and "none of the models has a symbolic dim 'heigth'" in r.stderr


def test_per_model_shapes_for_two_models_with_the_same_input_name(tmp_path):
    a = _detector(tmp_path, "a.onnx")
    b = _detector(tmp_path, "b.onnx")
    r = _run("compare", a, b, "--hw", "h100-sxm5", "--shape", "a.onnx:images=1x3x640x640",
             "--shape", f"{b}:images=1x3x320x320", "-f", "json")
    assert r.exit_code == 0, r.output
    chars = json.loads(r.stdout)["characteristics"]
    assert chars["a"]["macs"] == DET_MACS and chars["b"]["macs"] == DET_MACS // 4
    r = _run("compare", a, b, "--hw", "h100-sxm5", "--shape", "c.onnx:images=1x3x64x64")
    assert r.exit_code == 2  # names no model: not an input of any either


def test_sweep_exit_codes(tmp_path):
    det = _detector(tmp_path)
    # no point can run (H/W unbound): exit 2
    r = _run("sweep", det, "--hw", "h100-sxm5")
    assert r.exit_code == 2 and "every point failed" in r.stderr
    # some points fail (tpu-v4 has no fp16): exit 0, and 1 with --strict
    args = ["sweep", det, "--hw", "h100-sxm5,tpu-v4", "--precision", "fp16", "--dim", "height=64", "--dim",
            "width=64"]
    assert _run(*args).exit_code == 0
    r = _run(*args, "--strict")
    assert r.exit_code == 1 and "1 of 2 points failed" in r.stderr and "tpu-v4 cannot run fp16" in r.stderr


@pytest.mark.parametrize("how", [["--batch", "8"], ["--shape", "input=8x3x32x32"]])
def test_a_fixed_batch_file_is_rebatched_exactly(tmp_path, how):
    cls = _classifier(tmp_path)
    one = onnx_hwutil.profile(cls)
    r = _run("profile", cls, *how, "-f", "json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["totals"]["macs"] == 8 * one.totals.macs
    assert d["model"]["inputs"] == {"input": [8, 3, 32, 32]}
    gemm = next(n for n in d["nodes"] if n["op_type"] == "Gemm")
    assert gemm["outputs"] == ["8x10 float"]  # [1, -1] rewritten to [8, -1]: not one row of 8x the width
    assert any("re-batched to 8" in n for n in d["notes"]) and any("view" in n for n in d["notes"])


def test_a_fixed_batch_sweep_is_filled(tmp_path):
    cls = _classifier(tmp_path)
    r = _run("sweep", cls, "--hw", "h100-sxm5", "--batch", "1,2,4,8", "-f", "jsonl")
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["batch"] for x in rows] == [1, 2, 4, 8] and all(x["ok"] for x in rows)
    assert rows[3]["flops"] == 8 * rows[0]["flops"]


def test_a_reshape_that_mixes_the_batch_is_refused_by_name(tmp_path):
    # [1, 4, 8] -> Reshape to the constant [4, 8]: the batch is merged with the sequence; at batch 2 the
    # constant cannot hold 64 elements, and which dim should grow is not in the file.
    m = model([helper.make_node("Reshape", ["x", "s"], ["y"], name="merge")], [vi("x", T.FLOAT, [1, 4, 8])],
              [vi("y", T.FLOAT, [4, 8])], [init("s", (2,), np.int64, [4, 8])])
    r = _run("profile", save(m, tmp_path / "m.onnx"), "--batch", "2")
    assert r.exit_code == 2
    assert "Reshape 'merge' has a constant target [4, 8] that mixes the batch" in r.stderr


# -- readable output ---------------------------------------------------------------------------------------

def _blocks(tmp_path, n=6):
    """n identical MatMul+Add blocks: the per-class view must show one row with the count."""
    nodes, inits, prev = [], [], "x"
    for i in range(n):
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"], name=f"mm{i}"),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"], name=f"add{i}")]
        inits += [init(f"w{i}", (64, 64)), init(f"b{i}", (64,))]
        prev = f"a{i}"
    return save(model(nodes, [vi("x", T.FLOAT, ["batch", 64])], [vi(prev, T.FLOAT, ["batch", 64])], inits),
                tmp_path / "blocks.onnx")


def test_analyze_groups_kernels_by_class_and_leads_with_the_bottleneck(tmp_path):
    path = _blocks(tmp_path)
    r = _run("analyze", path, "--hw", "h100-sxm5", "--per-subgraph")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].startswith("h100-sxm5 bf16 batch 1: time goes to MatMul+Add x6 100.0% (overhead-bound)")
    row = next(x for x in lines if x.startswith("MatMul+Add"))
    assert row.split()[1] == "6" and "100.0%" in row
    r = _run("analyze", path, "--hw", "h100-sxm5", "--per-subgraph", "--all-kernels")
    assert sum(x.split()[1:2] == ["MatMul+Add"] for x in r.stdout.splitlines()) == 6


def test_fuse_what_if_comes_first_in_the_direction_asked(tmp_path):
    r = _run("fuse", _blocks(tmp_path), "--preset", "none", "--compare", "aggressive")
    lines = r.stdout.splitlines()
    assert lines[2] == "What-if: none -> aggressive"
    kernels = next(x for x in lines if x.startswith("kernels"))
    assert kernels.split()[1:4] == ["12", "6", "-50.0%"]  # 12 kernels unfused, 6 with each Add in its MatMul


def test_sweep_table_reads_like_compare(tmp_path):
    r = _run("sweep", _blocks(tmp_path), "--hw", "h100-sxm5", "--batch", "1,1024")
    assert r.exit_code == 0
    body = r.stdout.splitlines()[2:]
    assert all(x.startswith("blocks ") for x in body)  # the model's name, not its path
    assert "e+" not in r.stdout and "e-" not in r.stdout
    assert "TOP/s" in r.stdout or "GOP/s" in r.stdout


def test_unknown_dims_print_as_question_marks(tmp_path):
    m = model([helper.make_node("Mystery", ["x"], ["y"], domain="com.example"),
               helper.make_node("Relu", ["x"], ["z"])], [vi("x", T.FLOAT, [2, 3])],
              [vi("y", T.FLOAT, None), vi("z", T.FLOAT, [2, 3])],
              opset=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    r = _run("profile", save(m, tmp_path / "m.onnx"))
    assert "None" not in r.stdout and "2x3" in r.stdout


def test_best_chip_answers_say_what_they_rest_on(tmp_path):
    a, b = _blocks(tmp_path), _classifier(tmp_path)
    r = _run("compare", a, b, "--hw", "h100-sxm5,kpu-t256", "-f", "json")
    advice = json.loads(r.stdout)["advice"]
    # the KPU has no silicon: every number assumed. Where it wins, the answer says so.
    cells = [c for row in advice for c in (row["latency"], row["throughput"], row["energy"])]
    kpu = [c for c in cells if c.startswith("kpu-t256")]
    assert kpu and all(c == "kpu-t256 (assumed design)" for c in kpu)
    r = _run("compare", a, b, "--hw", "h100-sxm5,kpu-t256", "--cited-only", "-f", "json")
    assert not any(c.startswith("kpu") for row in json.loads(r.stdout)["advice"]
                   for c in (row["latency"], row["throughput"], row["energy"]))


# -- re-batching, the cases a review found -----------------------------------------------------------------

def test_rebatching_leaves_length_inputs_and_refuses_ambiguous_leading_dims(tmp_path):
    # x[1, 16] and a rank-1 s[2]: only x is batched
    m = model([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["s"], ["z"])],
              [vi("x", T.FLOAT, [1, 16]), vi("s", T.FLOAT, [2])],
              [vi("y", T.FLOAT, [1, 16]), vi("z", T.FLOAT, [2])])
    p = onnx_hwutil.profile(save(m, tmp_path / "a.onnx"), batch=8)
    assert p.bound.inputs == {"x": (8, 16), "s": (2,)} and p.totals.flops == 8 * 16 + 2
    # a seq-first LSTM with dim 0 fixed at 50: that is not a batch to overwrite
    lstm = model([helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=8)],
                 [vi("x", T.FLOAT, [50, 1, 16])], [vi("y", T.FLOAT, [50, 1, 1, 8])],
                 [init("W", (1, 32, 16)), init("R", (1, 32, 8))])
    r = _run("profile", save(lstm, tmp_path / "l.onnx"), "--batch", "8")
    assert r.exit_code == 2 and "every input fixes dim 0 at 50" in r.stderr
    # zero is no batch, fixed file or not
    r = _run("profile", _classifier(tmp_path), "--shape", "input=0x3x32x32")
    assert r.exit_code == 2 and "at least 1" in r.stderr


def test_rebatching_follows_resize_sizes_stale_value_info_and_long_chains(tmp_path):
    # Resize with constant sizes [1, 3, 16, 16] then a Conv: the sizes carry the batch too
    m = model([helper.make_node("Resize", ["x", "", "", "sz"], ["r"], mode="nearest"),
               helper.make_node("Conv", ["r", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
              [vi("x", T.FLOAT, [1, 3, 8, 8])], [vi("y", T.FLOAT, [1, 4, 16, 16])],
              [init("sz", (4,), np.int64, [1, 3, 16, 16]), init("w", (4, 3, 3, 3))])
    one, eight = (onnx_hwutil.profile(save(m, tmp_path / "r.onnx"), batch=b).totals.macs for b in (1, 8))
    assert eight == 8 * one == 8 * 4 * 256 * 27
    # the file's value_info still says batch 1 for the flattened tensor; and 20 Reshapes in a row
    nodes, prev = [], "x"
    for i in range(20):
        nodes += [helper.make_node("Reshape", [prev, "s"], [f"f{i}"], name=f"view{i}"),
                  helper.make_node("Relu", [f"f{i}"], [f"r{i}"])]
        prev = f"r{i}"
    nodes.append(helper.make_node("Gemm", [prev, "W"], ["y"], transB=1))
    m = model(nodes, [vi("x", T.FLOAT, [1, 4, 8])], [vi("y", T.FLOAT, [1, 5])],
              [init("s", (2,), np.int64, [1, -1]), init("W", (5, 32))],
              value_info=[vi("f0", T.FLOAT, [1, 32])])
    p = onnx_hwutil.profile(save(m, tmp_path / "c.onnx"), batch=8)
    assert p.totals.macs == 8 * 5 * 32 and not p.unresolved
    assert any("rewrote 20 shape constants" in n for n in p.bound.shape_notes)


def test_rebatching_a_sequence_first_recurrent_input_sets_its_batch_axis(tmp_path):
    # x[1, 64] -> Reshape [1, 1, 64] -> GRU ([seq, batch, input]): at batch 8 that is [1, 8, 64], one step
    m = model([helper.make_node("Reshape", ["x", "s"], ["xs"]),
               helper.make_node("GRU", ["xs", "W", "R"], ["y"], hidden_size=128)],
              [vi("x", T.FLOAT, [1, 64])], [vi("y", T.FLOAT, [1, 1, 1, 128])],
              [init("s", (3,), np.int64, [1, 1, 64]), init("W", (1, 384, 64)), init("R", (1, 384, 128))])
    p = onnx_hwutil.profile(save(m, tmp_path / "g.onnx"), batch=8)
    [g] = next(nc.gemms for nc in p.costs.nodes if nc.gemms)
    assert (g.serial, g.m) == (1, 8)  # one step over a batch of 8, not 8 steps of batch 1


def _legacy_export(name, tmp_path):
    """The bundled model as a legacy exporter writes it: batch fixed at 1 in the inputs and every shape
    computation folded into constants (Reshape targets such as [1, 128, 12, 64])."""
    import onnx
    from conftest import model_path

    from onnx_hwutil.bindings import graph_inputs
    from onnx_hwutil.loader import load_model
    from onnx_hwutil.shape_folding import fold_shape_subgraphs
    from onnx_hwutil.shapes import _onnx_infer

    m = load_model(model_path(name))
    for v in graph_inputs(m.graph):
        v.type.tensor_type.shape.dim[0].dim_value = 1
    for _ in range(8):
        m, n = fold_shape_subgraphs(_onnx_infer(m))
        if not n:
            break
    inits = {i.name for i in m.graph.initializer}
    keep = [n for n in m.graph.node if not (n.op_type == "Constant" and n.output[0] in inits)]
    del m.graph.node[:]
    m.graph.node.extend(keep)
    path = tmp_path / f"legacy_{name}.onnx"
    onnx.save(m, path)
    return path


@pytest.mark.parametrize(("name", "rewritten"), [("bert_base", 48), ("mobilenet_v2", 0)])
def test_legacy_exports_of_real_models_rebatch_exactly(tmp_path, bundled, name, rewritten):
    path = _legacy_export(name, tmp_path)
    p = onnx_hwutil.profile(path, batch=8)
    from onnx_hwutil.profile import Profile

    assert p.totals.macs == Profile(bundled(name, 8)).totals.macs  # the dynamic export at batch 8
    notes = " ".join(p.bound.shape_notes)
    assert (f"rewrote {rewritten} shape constants" in notes) == bool(rewritten) and "still lead" not in notes


def test_a_legacy_seq_first_vit_is_refused_at_the_reshape_that_folds_the_batch(tmp_path):
    # torch's seq-first attention views q as [197, batch * 12, 64]: at batch 1 the constant is [197, 12, 64],
    # and which factor of 12 was the batch is not in the file
    from onnx_hwutil.errors import HwUtilError

    with pytest.raises(HwUtilError, match=r"Reshape '.*self_attention/Reshape_3' has a constant target "
                                          r"\[197, 12, 64\] that mixes the batch"):
        onnx_hwutil.profile(_legacy_export("vit_b_16", tmp_path), batch=8)


def test_formats_offered_are_formats_served(tmp_path):
    # documents (fuse, compare, validate) offer table and json; row commands add csv, and serve it
    path = _blocks(tmp_path)
    for cmd in (["fuse", path], ["compare", path, path], ["validate", path]):
        r = _run(*cmd, "-f", "csv")
        assert r.exit_code == 2, cmd
    for cmd in (["profile", path], ["analyze", path, "--no-findings"]):
        r = _run(*cmd, "-f", "csv")
        assert r.exit_code == 0 and r.stdout.count(",") > 5, cmd


def test_rebatching_cases_a_second_review_found(tmp_path):
    from onnx_hwutil.errors import HwUtilError

    x = vi("x", T.FLOAT, [1, 3, 8, 8])
    conv = helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1])
    w = init("w", (16, 3, 1, 1))
    # a (b*c, 1, h, w) view: its only 1 is not the batch, which is folded into 16 -> refused, not rewritten
    m = model([conv, helper.make_node("Reshape", ["c", "s"], ["v"], name="bc_view"),
               helper.make_node("Relu", ["v"], ["y"])], [x], [vi("y", T.FLOAT, None)],
              [w, init("s", (4,), np.int64, [16, 1, 8, 8])])
    with pytest.raises(HwUtilError, match="'bc_view' has a constant target"):
        onnx_hwutil.profile(save(m, tmp_path / "a.onnx"), batch=8)
    # [1, 1, 64] -> [64, 1]: the input keeps its batch outermost, so the target's 1 is not it: refused
    m = model([helper.make_node("Reshape", ["u", "s"], ["v"], name="col_view"),
               helper.make_node("Relu", ["v"], ["y"])],
              [vi("u", T.FLOAT, [1, 1, 64])], [vi("y", T.FLOAT, None)], [init("s", (2,), np.int64, [64, 1])])
    with pytest.raises(HwUtilError, match="'col_view' has a constant target"):
        onnx_hwutil.profile(save(m, tmp_path / "a2.onnx"), batch=8)
    # a batch-independent second input (a lookup table, a text) stays as it is; x is re-batched
    m = model([conv, helper.make_node("MatMul", ["c", "lut"], ["y"]),
               helper.make_node("Neg", ["scale"], ["z"])],
              [x, vi("lut", T.FLOAT, [8, 8]), vi("scale", T.FLOAT, [1])],
              [vi("y", T.FLOAT, None), vi("z", T.FLOAT, None)], [w])
    p = onnx_hwutil.profile(save(m, tmp_path / "b.onnx"), batch=8)
    assert p.bound.inputs == {"x": (8, 3, 8, 8), "lut": (8, 8), "scale": (1,)}
    assert p.totals.macs == 8 * (16 * 64 * 3 + 16 * 8 * 8 * 8)
    # a class token expanded to [1, 1, 4] at export and concatenated with the batched patches
    m = model([helper.make_node("Expand", ["cls", "e"], ["ce"]),
               helper.make_node("Concat", ["ce", "p"], ["seq"], axis=1),
               helper.make_node("MatMul", ["seq", "W"], ["y"])],
              [vi("p", T.FLOAT, [1, 9, 4])], [vi("y", T.FLOAT, None)],
              [init("cls", (1, 1, 4)), init("e", (3,), np.int64, [1, 1, 4]), init("W", (4, 4))])
    p = onnx_hwutil.profile(save(m, tmp_path / "c.onnx"), batch=8)
    assert p.totals.macs == 8 * 10 * 4 * 4 and not p.unresolved
    # fixed rows of the batch (x[0:1]) no longer carry it: the view after them keeps its 1
    m = model([helper.make_node("Slice", ["x2", "st", "en", "ax"], ["r"]),
               helper.make_node("Reshape", ["r", "s"], ["f"]), helper.make_node("MatMul", ["f", "W"], ["y"])],
              [vi("x2", T.FLOAT, [1, 16])], [vi("y", T.FLOAT, None)],
              [init("st", (1,), np.int64, [0]), init("en", (1,), np.int64, [1]),
               init("ax", (1,), np.int64, [0]), init("s", (2,), np.int64, [1, -1]), init("W", (16, 4))])
    p = onnx_hwutil.profile(save(m, tmp_path / "d.onnx"), batch=8)
    assert p.totals.macs == 1 * 16 * 4
    # a --shape that keeps an input at the file's batch keeps its path unrewritten
    m = model([helper.make_node("Reshape", ["pri", "s"], ["f"]), helper.make_node("Relu", ["x3"], ["y"]),
               helper.make_node("Relu", ["f"], ["z"])],
              [vi("pri", T.FLOAT, [1, 16, 4]), vi("x3", T.FLOAT, [1, 4])],
              [vi("y", T.FLOAT, None), vi("z", T.FLOAT, None)], [init("s", (2,), np.int64, [1, -1])])
    p = onnx_hwutil.profile(save(m, tmp_path / "e.onnx"), batch=8, shapes={"pri": "1x16x4"})
    assert p.bound.inputs == {"pri": (1, 16, 4), "x3": (8, 4)} and p.totals.flops == 64 + 32
