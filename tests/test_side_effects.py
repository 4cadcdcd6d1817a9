"""Nothing is read or written behind the user's back, the same input gives the same bytes, and a model far
larger than memory analyzes from its graph alone."""

import builtins
import io
import os
import pathlib
import subprocess
import sys

from builders import init, model, save, vi
from conftest import model_path
from onnx import TensorProto as T
from onnx import helper
from typer.testing import CliRunner

import onnx_hwutil
from onnx_hwutil.cli import app

EVIL = ["/etc/passwd", "../../secret.bin", "/dev/zero", "missing.bin", "/proc/self/mem"]


def _external(t, location: str) -> None:
    t.ClearField("raw_data")
    t.data_location = T.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", location


def _evil_model(tmp_path):
    inits = [init(f"w{i}", (64, 64)) for i in range(len(EVIL))]
    for t, where in zip(inits, EVIL, strict=True):
        _external(t, where)
    nodes = []
    prev = "x"
    for i in range(len(EVIL)):
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"]))
        prev = f"h{i}"
    m = model(nodes, [vi("x", T.FLOAT, ["batch", 64])], [vi(prev, T.FLOAT, ["batch", 64])], inits)
    return save(m, tmp_path / "evil.onnx")


def test_only_the_model_file_is_opened_and_it_is_unchanged(tmp_path, monkeypatch):
    path = _evil_model(tmp_path)
    before = (pathlib.Path(path).read_bytes(), os.stat(path).st_mtime_ns)
    opened = []
    real_open, real_io_open, real_os_open = builtins.open, io.open, os.open

    def spy(file, *a, **k):
        opened.append(os.fspath(file) if not isinstance(file, int) else file)
        return real_open(file, *a, **k)

    def spy_os(file, *a, **k):
        opened.append(os.fspath(file))
        return real_os_open(file, *a, **k)

    monkeypatch.setattr(builtins, "open", spy)
    monkeypatch.setattr(io, "open", spy)
    monkeypatch.setattr(os, "open", spy_os)
    runner = CliRunner()
    for args in (["profile", path, "--batch", "2"], ["fuse", path, "--batch", "2"],
                 ["analyze", path, "--batch", "2", "--hw", "h100-sxm5,tpu-v4"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
    monkeypatch.setattr(builtins, "open", real_open)
    monkeypatch.setattr(io, "open", real_io_open)
    monkeypatch.setattr(os, "open", real_os_open)
    names = [str(p) for p in opened]
    for evil in EVIL:
        assert not any(n.endswith(evil.split("/")[-1]) and "hwspecs" not in n for n in names), (evil, names)
    inside = {n for n in names if n.startswith(str(tmp_path))}
    assert inside == {path}
    assert (pathlib.Path(path).read_bytes(), os.stat(path).st_mtime_ns) == before
    assert sorted(os.listdir(tmp_path)) == ["evil.onnx"]


def test_same_input_same_bytes_whatever_the_hash_seed(tmp_path):
    path = model_path("bert_base")
    outs = {}
    for seed in ("0", "1", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        r = subprocess.run([sys.executable, "-m", "onnx_hwutil.cli", "analyze", path, "--batch", "1",
                            "--hw", "h100-sxm5", "--fusion", "aggressive", "--per-subgraph", "-f", "json"],
                           capture_output=True, env=env, check=True)
        outs[seed] = r.stdout
    assert outs["0"] == outs["1"] == outs["4242"] and len(outs["0"]) > 10_000
    a = onnx_hwutil.profile(path, batch=1).to_dict()
    assert a == onnx_hwutil.profile(path, batch=1).to_dict()


def test_a_model_over_2gb_analyzes_from_its_graph(tmp_path):
    # 40000x20000 + 20000x30000 fp32 weights: 5.6 GB of external data that does not exist here.
    w1, w2 = init("w1", (1, 1)), init("w2", (1, 1))
    for t, dims in ((w1, (40000, 20000)), (w2, (20000, 30000))):
        del t.dims[:]
        t.dims.extend(dims)
        _external(t, "weights.bin")
    m = model([helper.make_node("MatMul", ["x", "w1"], ["h"]),
               helper.make_node("MatMul", ["h", "w2"], ["y"])],
              [vi("x", T.FLOAT, [1, 40000])], [vi("y", T.FLOAT, [1, 30000])], [w1, w2])
    path = save(m, tmp_path / "big.onnx")
    assert os.path.getsize(path) < 10_000
    p = onnx_hwutil.profile(path)
    assert p.totals.params == 40000 * 20000 + 20000 * 30000
    assert p.totals.weight_bytes == 4 * p.totals.params > 2**31
    assert p.totals.macs == 40000 * 20000 + 20000 * 30000
