"""Sweeps: every point equals the same point analyzed alone, in one process or several; failures carry on."""

import json

import pytest
from conftest import model_path
from typer.testing import CliRunner

from onnx_hwutil.analysis import analyze
from onnx_hwutil.cli import app
from onnx_hwutil.errors import HwUtilError
from onnx_hwutil.sweep import points, sweep


def test_sweep_points_equal_single_analyses_and_workers_agree():
    pts = points([model_path("resnet18")], ["h100-sxm5", "tpu-v4"], [1, 8], ["fp16", "bf16"],
                 ["none", "runtime"])
    serial = sweep(pts, jobs=1)
    parallel = sweep(pts, jobs=2)
    assert serial == parallel and len(serial) == 16
    failed = [r for r in serial if not r["ok"]]
    assert {r["hardware"] for r in failed} == {"tpu-v4"} and len(failed) == 4  # TPU v4 has no fp16
    assert "tpu-v4 cannot run fp16" in failed[0]["error"]
    for r in serial:
        if r["ok"]:
            [alone] = analyze(r["model"], r["hardware"], r["batch"], r["precision"], r["fusion"])
            assert r["latency_s"] == pytest.approx(alone.latency_s, rel=1e-12)
            assert r["energy_per_batch_j"] == pytest.approx(alone.energy["total_j"], rel=1e-12)


def test_dask_cluster_gives_the_same_rows_as_local_runs():
    from distributed import LocalCluster

    pts = points([model_path("resnet18"), model_path("mobilenet_v2")], ["h100-sxm5", "tpu-v4"], [1, 4],
                 ["bf16", "fp16"], ["runtime"])
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        seen = []
        remote = sweep(pts, scheduler=cluster.scheduler_address, progress=seen.append)
    assert remote == sweep(pts, jobs=1)
    assert sum(seen) == len(pts) == 16 and len(seen) == 4  # one progress step per (model, batch) chunk
    assert remote[0]["model"] == model_path("resnet18")  # the user's path, not the one shipped


def test_dask_rows_use_the_paths_as_given(monkeypatch):
    from conftest import ROOT
    from distributed import LocalCluster

    monkeypatch.chdir(ROOT)
    pts = points(["models/resnet18.onnx"], ["h100-sxm5", "hwspecs/tpu-v4.yaml"], [1], ["fp16"], ["none"])
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        remote = sweep(pts, scheduler=cluster.scheduler_address)
    assert remote == sweep(pts)
    failed = [r for r in remote if not r["ok"]]
    assert [r["hardware"] for r in failed] == ["hwspecs/tpu-v4.yaml"]
    assert remote[0]["model"] == "models/resnet18.onnx" and str(ROOT) not in failed[0]["error"]


def test_a_cluster_without_workers_is_an_error(monkeypatch):
    from distributed import LocalCluster

    from onnx_hwutil import sweep as sweep_module

    monkeypatch.setattr(sweep_module, "WORKER_WAIT_S", 1)
    pts = points([model_path("resnet18")], ["h100-sxm5"], [1], ["auto"], ["none"])
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster, \
            pytest.raises(HwUtilError, match="no worker joined in 1 s"):
        sweep(pts, scheduler=cluster.scheduler_address)


def test_what_is_wrong_for_every_point_is_an_input_error():
    base = ["sweep", model_path("resnet18"), "--batch", "1"]
    for extra, message in ((["--hw", "bogus"], "unknown hardware 'bogus'"),
                           (["--precision", "fp64"], "unknown --precision 'fp64'"),
                           (["--fusion", "max"], "unknown fusion preset 'max'"),
                           (["missing.onnx"], "missing.onnx: no such file"),
                           (["--hw", "tpu-v4", "--precision", "fp16"], "every point failed")):
        r = CliRunner().invoke(app, [*base, *extra])
        assert r.exit_code == 2 and message in r.stderr, (extra, r.output)


def test_cli_sweep_on_dask_with_plot_and_bad_scheduler(tmp_path):
    from distributed import LocalCluster

    args = ["sweep", model_path("resnet18"), "--hw", "h100-sxm5,tpu-v4", "--batch", "1,2", "-f", "jsonl"]
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        r = CliRunner().invoke(app, [*args, "--scheduler", cluster.scheduler_address,
                                     "--plot", str(tmp_path)])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 4 and all(row["ok"] for row in rows)
    assert (tmp_path / "batch_sweep.png").is_file() and (tmp_path / "batch_sweep.svg").is_file()
    r = CliRunner().invoke(app, [*args, "--scheduler", "localhost:8786"])
    assert r.exit_code == 2 and "expected e.g. tcp://host:8786" in r.stderr
