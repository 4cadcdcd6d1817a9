"""Bad input: one line naming the problem on stderr, exit code 2, no traceback, the file untouched."""

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from builders import conv_relu, init, model, save, vi
from onnx import TensorProto as T
from onnx import helper
from typer.testing import CliRunner

from onnx_hwutil.cli import app

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, ["profile", *args])


def _assert_clean_error(result, *fragments):
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("onnx-hwutil: error: ")
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in lines[0], lines[0]


def _digest(path):
    st = os.stat(path)
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest(), st.st_mtime_ns


def test_missing_path(tmp_path):
    _assert_clean_error(_run(str(tmp_path / "nope.onnx")), "no such file")


def test_not_a_protobuf(tmp_path):
    p = tmp_path / "x.onnx"
    p.write_text("this is not a model\n" * 10)
    before = _digest(p)
    _assert_clean_error(_run(str(p)), "not a valid ONNX model")
    assert _digest(p) == before


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_truncated_file(tmp_path, keep):
    full = save(conv_relu(), tmp_path / "full.onnx")
    data = pathlib.Path(full).read_bytes()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[: int(len(data) * keep)])
    before = _digest(p)
    result = _run(str(p), "--batch", "1")
    _assert_clean_error(result)
    assert _digest(p) == before


def test_cycle(tmp_path):
    m = model([helper.make_node("Add", ["x", "b"], ["a"], name="n1"),
               helper.make_node("Relu", ["a"], ["b"], name="n2")],
              [vi("x", T.FLOAT, [4])], [vi("b", T.FLOAT, [4])])
    _assert_clean_error(_run(save(m, tmp_path / "c.onnx")), "cycle", "n1", "n2")


def test_dangling_input(tmp_path):
    m = model([helper.make_node("Add", ["x", "ghost"], ["y"], name="add")],
              [vi("x", T.FLOAT, [4])], [vi("y", T.FLOAT, [4])])
    _assert_clean_error(_run(save(m, tmp_path / "d.onnx")), "'add'", "'ghost'", "no node")


def test_unbound_dims(tmp_path):
    # The batch defaults to 1 (and says so); a sequence length has no default.
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", T.FLOAT, ["N", "seq"])],
              [vi("y", T.FLOAT, ["N", "seq"])])
    _assert_clean_error(_run(save(m, tmp_path / "m.onnx")), "unbound dims", "'seq'", "--dim seq=N")


def test_shape_for_unknown_input(tmp_path):
    _assert_clean_error(_run(save(conv_relu(), tmp_path / "m.onnx"), "--shape", "img=1x3x32x32"),
                        "no input 'img'", "x")


def test_shape_with_wrong_rank(tmp_path):
    _assert_clean_error(_run(save(conv_relu(), tmp_path / "m.onnx"), "--shape", "x=1x3x32"), "rank 4")


def test_shape_conflicting_with_static_dim(tmp_path):
    _assert_clean_error(_run(save(conv_relu(), tmp_path / "m.onnx"), "--shape", "x=1x4x32x32"),
                        "dim 1", "fixed at 3")


def test_unknown_precision(tmp_path):
    _assert_clean_error(_run(save(conv_relu(), tmp_path / "m.onnx"), "--batch", "1", "--precision", "fp64"),
                        "unknown --precision 'fp64'")


def test_bad_flag_syntax(tmp_path):
    path = save(conv_relu(), tmp_path / "m.onnx")
    _assert_clean_error(_run(path, "--shape", "x=1xAx3"), "integers")
    _assert_clean_error(_run(path, "--dim", "N"), "NAME=VALUE")
    _assert_clean_error(_run(path, "--dim", "M=3"), "no symbolic dim 'M'")


def test_directory_instead_of_file(tmp_path):
    _assert_clean_error(_run(str(tmp_path)), "not a regular file")


def test_strict_exits_1_on_uncovered(tmp_path):
    m = model([helper.make_node("Mystery", ["x"], ["y"], domain="com.example")],
              [vi("x", T.FLOAT, [4])], [vi("y", T.FLOAT, [4])],
              opset=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    path = save(m, tmp_path / "u.onnx")
    ok = _run(path)
    assert ok.exit_code == 0 and "UNCOVERED" in ok.stdout and "com.example::Mystery x1" in ok.stdout
    strict = _run(path, "--strict")
    assert strict.exit_code == 1 and "com.example::Mystery" in strict.stderr


def test_a_reshape_fixed_for_another_batch_is_refused(tmp_path):
    m = model([helper.make_node("Reshape", ["x", "s"], ["r"], name="flat"),
               helper.make_node("MatMul", ["r", "w"], ["y"])],
              [vi("x", T.FLOAT, ["N", 256])], [vi("y", T.FLOAT, ["N", 10])],
              [init("s", (2,), np.int64, [1, 256]), init("w", (256, 10))])
    path = save(m, tmp_path / "hard.onnx")
    assert runner.invoke(app, ["analyze", path, "--batch", "1"]).exit_code == 0
    _assert_clean_error(runner.invoke(app, ["analyze", path, "--batch", "8"]),
                        "node 'flat' (Reshape): its input has 2048 elements, which its target shape 1x256")


@pytest.mark.parametrize("target, allowzero", [([0, -1], 0), ([-1, 16], 0), ([4, 0, 16], 1), ([2, -1], 0)])
def test_reshapes_that_can_run_are_costed(tmp_path, target, allowzero):
    x = [4, 16] if allowzero else ["N", 16]
    m = model([helper.make_node("Reshape", ["x", "s"], ["r"], allowzero=allowzero),
               helper.make_node("Relu", ["r"], ["y"])],
              [vi("x", T.FLOAT, x if not allowzero else [4, 0, 16])], [vi("y", T.FLOAT, None)],
              [init("s", (len(target),), np.int64, target)])
    path = save(m, tmp_path / "ok.onnx")
    args = ["profile", path, "--strict", "-f", "json"] + ([] if allowzero else ["--batch", "4"])
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    # 64 elements reshaped (or 0 with allowzero): the Relu costs one FLOP each, the Reshape moves nothing
    relu = next(n for n in d["nodes"] if n["op_type"] == "Relu")
    assert relu["flops"] == (0 if allowzero else 64) and relu["status"] == "ok"
    assert next(n for n in d["nodes"] if n["op_type"] == "Reshape")["bytes_read"] == 0


def test_a_stale_declared_output_shape_does_not_refuse_a_runnable_batch(tmp_path):
    # exporters write the traced batch into value_info and outputs; onnxruntime runs other batches anyway
    m = model([helper.make_node("Flatten", ["x"], ["f"], axis=1), helper.make_node("Relu", ["f"], ["y"])],
              [vi("x", T.FLOAT, ["N", 8, 4])], [vi("y", T.FLOAT, [1, 32])],
              value_info=[vi("f", T.FLOAT, [1, 32])])
    path = save(m, tmp_path / "stale.onnx")
    r = runner.invoke(app, ["profile", path, "--batch", "3", "--strict", "-f", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["totals"]["flops"] == 3 * 32  # the Relu of 3 rows


@pytest.mark.parametrize("args, fragment", [
    (["report", "m.onnx", "-o", "out", "--batch", "0"], "Invalid value for '--batch'"),
    (["sweep", "m.onnx", "--jobs", "0"], "Invalid value for '--jobs'"),
    (["analyze"], "Missing argument 'model'"),
    (["analyze", "m.onnx", "--bogus"], "No such option: --bogus"),
])
def test_usage_errors_of_the_console_script_are_one_line(tmp_path, args, fragment):
    # click formats these before our code runs; the console script's main() turns them into our one line
    r = subprocess.run([sys.executable, "-m", "onnx_hwutil.cli", *args], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    [line] = r.stderr.splitlines()
    assert line.startswith("onnx-hwutil: error: ") and fragment in line
