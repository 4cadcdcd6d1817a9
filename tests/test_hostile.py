"""Hostile input, round 2 (issue 20): resource bombs, spec files, CLI integers and writes outside -o.

Every case answers within BOUND_S seconds and BOUND_AS bytes of address space, or refuses in one line with
exit 2. The bombs run in a child process under those limits, so a regression fails the test instead of
taking the machine's memory.
"""

import os
import pathlib
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading

import numpy as np
import pytest
import yaml
from builders import conv_relu, init, model, save, vi
from onnx import TensorProto as T
from onnx import helper, numpy_helper

from onnx_hwutil.hardware.catalog import HWSPEC_DIR

BOUND_S = 30
BOUND_AS = 3 << 30


def _limits():
    resource.setrlimit(resource.RLIMIT_AS, (BOUND_AS, BOUND_AS))


def _cli(*args, env=None, timeout=BOUND_S):
    """The console script in a child process, bounded in time and address space."""
    return subprocess.run([sys.executable, "-m", "onnx_hwutil.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, preexec_fn=_limits, env=env or dict(os.environ))


def _refused(r, *fragments):
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-500:])
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("onnx-hwutil: error: "), r.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def _const(name, value):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value, np.int64)))


def _range_model(n):
    return model([_const("s", 0), _const("l", n), _const("d", 1),
                  helper.make_node("Range", ["s", "l", "d"], ["y"]),
                  helper.make_node("Cast", ["y"], ["z"], to=T.FLOAT)], [], [vi("z", T.FLOAT, None)])


# -- resource bounds ---------------------------------------------------------------------------------------

def test_a_range_of_two_to_the_62_is_refused_without_building_it(tmp_path):
    _refused(_cli("profile", save(_range_model(1 << 62), tmp_path / "r.onnx")), "elements",
             "beyond any real model")


def test_a_large_generated_constant_skips_data_propagation_and_still_counts(tmp_path):
    # 2^24 values: onnx's data propagation would build them at ~150 B each (2.4 GB); its shape is enough.
    r = _cli("profile", save(_range_model(1 << 24), tmp_path / "r.onnx"), "-f", "json")
    assert r.returncode == 0, r.stderr
    assert "onnx data propagation skipped: Range node" in r.stdout and '"16777216 float"' in r.stdout


def test_a_scan_over_more_inputs_than_it_has_is_refused(tmp_path):
    body = helper.make_graph([helper.make_node("Identity", ["a"], ["b"])], "body", [vi("a", T.FLOAT, [4])],
                             [vi("b", T.FLOAT, [4])])
    m = model([helper.make_node("Scan", ["x"], ["y"], body=body, num_scan_inputs=1 << 30)],
              [vi("x", T.FLOAT, [3, 4])], [vi("y", T.FLOAT, [3, 4])])
    _refused(_cli("profile", save(m, tmp_path / "s.onnx")), "num_scan_inputs=1073741824", "1 inputs")


def _function_chain(levels, recursive=False):
    """F_i calls F_{i+1} twice: 2^levels nodes once inlined."""
    funcs = []
    for i in range(levels):
        callee = f"F{0 if recursive else i + 1}"
        nodes = ([helper.make_node(callee, ["x"], ["h"], domain="local"),
                  helper.make_node(callee, ["h"], ["y"], domain="local")] if i + 1 < levels or recursive
                 else [helper.make_node("Relu", ["x"], ["y"])])
        funcs.append(helper.make_function("local", f"F{i}", ["x"], ["y"], nodes,
                                          [helper.make_opsetid("", 17)]))
    m = model([helper.make_node("F0", ["x"], ["y"], domain="local")], [vi("x", T.FLOAT, [4])],
              [vi("y", T.FLOAT, [4])], opset=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)])
    m.functions.extend(funcs)
    return m


def test_functions_that_expand_exponentially_are_refused_before_inlining(tmp_path):
    _refused(_cli("profile", save(_function_chain(30), tmp_path / "f.onnx")), "expand to more than")
    _refused(_cli("profile", save(_function_chain(3, recursive=True), tmp_path / "g.onnx")), "calls itself")
    # a modest chain still inlines and costs: 2^5 Relus of 4 elements
    r = _cli("profile", save(_function_chain(6), tmp_path / "ok.onnx"), "-f", "json")
    assert r.returncode == 0 and '"flops": 128' in r.stdout, r.stderr


def test_a_file_over_protobufs_limit_is_refused_unread(tmp_path):
    big = tmp_path / "big.onnx"
    with open(big, "wb") as f:  # sparse: 3 GB on paper, nothing on disk
        f.truncate(3 << 30)
    _refused(_cli("profile", big), "over protobuf's 2 GiB limit")


def test_a_name_beyond_any_real_model_is_refused(tmp_path):
    m = model([helper.make_node("Relu", ["x"], ["y"], name="n" * 200_000)], [vi("x", T.FLOAT, [4])],
              [vi("y", T.FLOAT, [4])])
    _refused(_cli("profile", save(m, tmp_path / "n.onnx")), "a name of 200,000 characters")


def test_a_sweep_of_too_many_points_is_refused_and_workers_are_bounded(tmp_path, monkeypatch):
    path = save(conv_relu(), tmp_path / "m.onnx")
    _refused(_cli("sweep", path, "--hw", "h100-sxm5", "--batch", ",".join(map(str, range(1, 5001)))),
             "5,000 points", "--max-points 4,096")
    from onnx_hwutil import sweep

    asked = []

    class Pool:  # records the worker count instead of forking
        def __init__(self, n):
            asked.append(n)
            raise RuntimeError("stop")

    monkeypatch.setattr(sweep, "ProcessPoolExecutor", Pool)
    with pytest.raises(RuntimeError):
        list(sweep._local(300, [[None]] * 3))
    assert asked == [min(3, 2 * (os.cpu_count() or 1))]  # at most the chunks, at most 2 per core


def _external(t, location):
    t.ClearField("raw_data")
    t.data_location = T.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", location


def test_validate_refuses_weights_larger_than_free_memory(tmp_path):
    w = init("W", (1, 1))
    w.ClearField("dims")
    w.dims.extend([1_000_000, 1_000_000])  # 4 TB of fp32, absent
    _external(w, "absent.bin")
    m = model([helper.make_node("MatMul", ["x", "W"], ["y"])], [vi("x", T.FLOAT, [1, 1_000_000])],
              [vi("y", T.FLOAT, [1, 1_000_000])], [w])
    _refused(_cli("validate", save(m, tmp_path / "v.onnx"), "--hw", "host", "--runs", "3"),
             "needs about", "GiB free on this machine")


def test_validate_never_follows_a_link_out_of_the_models_folder(tmp_path):
    # The link sits inside the folder but points at a FIFO outside: opening it would block forever.
    outside = tmp_path / "outside"
    inside = tmp_path / "inside"
    outside.mkdir()
    inside.mkdir()
    os.mkfifo(outside / "canary")
    os.symlink(outside / "canary", inside / "w.bin")
    w = init("W", (8, 8))
    _external(w, "w.bin")
    m = model([helper.make_node("MatMul", ["x", "W"], ["y"])], [vi("x", T.FLOAT, [1, 8])],
              [vi("y", T.FLOAT, [1, 8])], [w])
    r = _cli("validate", save(m, inside / "m.onnx"), "--hw", "host", "--runs", "3", "--threads", "1")
    assert r.returncode == 0, r.stderr  # random weights in its place; the FIFO was never opened


# -- exit 2, not 3, for integers past any model ------------------------------------------------------------

@pytest.mark.parametrize("args", [["--batch", "18446744073709551617"],
                                  ["--shape", "x=9223372036854775808x3x32x32"],
                                  ["--dim", "N=" + "9" * 30]])
@pytest.mark.parametrize("cmd", ["profile", "analyze"])
def test_integers_past_any_model_are_bad_input(tmp_path, cmd, args):
    _refused(_cli(cmd, save(conv_relu(), tmp_path / "m.onnx"), *args), "more than 4,294,967,296")


# -- hardware specs ----------------------------------------------------------------------------------------

def _spec(tmp_path, edit):
    with open(f"{HWSPEC_DIR}/xeon-8490h.yaml") as f:
        data = yaml.safe_load(f)
    edit(data)
    path = tmp_path / "chip.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _set(path, value):
    def edit(d):
        *head, last = path.split(".")
        for k in head:
            d = d[k]
        d[last] = value
    return edit


def _cal(dispatch):
    def edit(d):
        d["calibration"] = {"source": "a synthetic table for a test", "threads": {
            1: {"gemm": [[64, 64, 64, 1e10]], "depthwise": [[1e3, 1e9]], "elementwise": [[1e3, 1e9]],
                "dispatch_s": dispatch}}}
    return edit


@pytest.mark.parametrize(("edit", "field"), [
    (_set("units.count.value", int("9" * 400)), "units.count"),
    (_set("clock_hz.value", 5e12), "clock_hz"),
    (_set("peak_ops_per_s.bf16.value", 5e-324), "peak_ops_per_s.bf16"),
    (_set("memory.dram_bandwidth_bytes_per_s.value", 5e-324), "memory.dram_bandwidth_bytes_per_s"),
    (_set("kernel_overhead_s.value", 1e308), "kernel_overhead_s"),
    (_set("energy.j_per_dram_byte.value", 1e308), "energy.j_per_dram_byte"),
    (_cal(float("nan")), "dispatch_s"),
    (_cal(float("inf")), "dispatch_s"),
])
def test_spec_numbers_outside_their_physical_range_are_refused(tmp_path, edit, field):
    _refused(_cli("hw", "show", _spec(tmp_path, edit)), field)


def test_a_calibration_thread_key_that_only_looks_like_a_digit_is_refused(tmp_path):
    def edit(d):
        _cal(1e-6)(d)
        d["calibration"]["threads"] = {"²": d["calibration"]["threads"][1]}
    _refused(_cli("hw", "show", _spec(tmp_path, edit)), "threads.²", "positive thread count")


def test_a_fifo_or_a_huge_file_as_a_spec_is_refused_without_reading(tmp_path):
    fifo = tmp_path / "chip.yaml"
    os.mkfifo(fifo)
    _refused(_cli("hw", "show", fifo, timeout=20), "not a regular file")
    _refused(_cli("analyze", save(conv_relu(), tmp_path / "m.onnx"), "--hw", fifo, timeout=20),
             "not a regular file")
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 200_000)
    _refused(_cli("hw", "show", big), "more than a hardware spec holds")


def test_a_sparse_initializer_with_a_negative_dim_is_refused(tmp_path):
    values = numpy_helper.from_array(np.ones(2, np.float32), "W")
    indices = numpy_helper.from_array(np.array([0, 1], np.int64), "W_idx")
    sparse = helper.make_sparse_tensor(values, indices, [-4, 4])
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g", [vi("x", T.FLOAT, [1, 4])],
                          [vi("y", T.FLOAT, [1, 4])], sparse_initializer=[sparse])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    _refused(_cli("profile", save(m, tmp_path / "s.onnx")), "negative dim", "[-4, 4]")


def test_json_output_is_strict():
    from onnx_hwutil.cli.common import to_json

    assert to_json({"a": 1.5}, None) == '{"a": 1.5}'
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError):
            to_json({"a": bad})


# -- writes ------------------------------------------------------------------------------------------------

def test_no_telemetry_is_written_to_the_users_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    ms = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    # a contrib op sends shape inference through onnxruntime, which used to write its telemetry database
    m = model([helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["y"], domain="com.microsoft",
                                num_heads=2)], [vi(n, T.FLOAT, [1, 4, 8]) for n in "qkv"],
              [vi("y", T.FLOAT, [1, 4, 8])], opset=ms)
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"} | {"HOME": str(home)}
    r = _cli("profile", save(m, tmp_path / "m.onnx"), env=env)
    assert r.returncode == 0, r.stderr
    subprocess.run([sys.executable, "-c", "import onnx_hwutil, onnxruntime"], env=env, check=True, timeout=60)
    assert [p for p in home.rglob("*")] == []


def test_output_naming_an_input_is_refused_and_the_input_kept(tmp_path):
    path = save(conv_relu(), tmp_path / "m.onnx")
    before = pathlib.Path(path).read_bytes()
    _refused(_cli("profile", path, "-o", path), "that is an input of this command")
    spec = _spec(tmp_path, lambda d: None)
    _refused(_cli("analyze", path, "--hw", f"h100-sxm5,{spec}", "-o", spec), "that is an input")
    assert pathlib.Path(path).read_bytes() == before


def test_termination_signals_unwind_so_temporary_folders_are_removed():
    from onnx_hwutil.validate import _terminations_unwind

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), _terminations_unwind(), tempfile.TemporaryDirectory() as tmp:
        kept = tmp
        os.kill(os.getpid(), signal.SIGTERM)
    assert not os.path.exists(kept)
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back


def test_a_scheduler_that_is_not_dask_is_named_as_such():
    pytest.importorskip("distributed")
    from onnx_hwutil.errors import HwUtilError
    from onnx_hwutil.sweep import _on_dask

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(20)
    port = srv.getsockname()[1]

    def serve():  # announces a 2^61-byte message to whoever connects
        for _ in range(4):
            try:
                c, _ = srv.accept()
            except OSError:
                return
            c.sendall(struct.pack("<Q", 1 << 61) + b"\xff" * 64)
            c.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        with pytest.raises(HwUtilError, match="did not answer as a Dask scheduler"):
            list(_on_dask(f"tcp://127.0.0.1:{port}", [[]]))
    finally:
        srv.close()
