"""Findings worked out in forked workers (forked.py): the same results, in order, however many ran."""

import json
import os

import pytest
from typer.testing import CliRunner

from onnx_hwutil.cli import app
from onnx_hwutil.forked import map_forked


def test_results_come_back_in_order_from_every_worker():
    parent = os.getpid()
    out = map_forked(lambda x: (x * x, os.getpid() == parent), list(range(7)), jobs=3)
    assert [v for v, _ in out] == [x * x for x in range(7)]
    assert not any(here for _, here in out)  # every item in a worker
    assert map_forked(lambda x: os.getpid() == parent, [0], jobs=3) == [True]  # one item: no worker


def test_an_exception_in_a_worker_is_raised_in_the_parent():
    def fn(x):
        if x == 1:
            raise ValueError("item 1")
        return x

    with pytest.raises(ValueError, match="item 1"):
        map_forked(fn, [0, 1, 2], jobs=2)


def test_a_worker_that_dies_has_its_items_done_by_the_parent():
    parent = os.getpid()

    def fn(x):
        if os.getpid() != parent:
            os._exit(3)  # a worker killed mid-way (out of memory, say): no result comes back
        return x + 1

    assert map_forked(fn, [0, 1, 2, 3], jobs=2) == [1, 2, 3, 4]


def test_analyze_findings_are_the_same_with_one_job_or_several(tmp_path):
    runner = CliRunner()
    outs = []
    for jobs in ("1", "2"):
        path = tmp_path / f"j{jobs}.json"
        r = runner.invoke(app, ["analyze", "models/resnet18.onnx", "--hw", "h100-sxm5,xeon-8490h,tpu-v4",
                                "--jobs", jobs, "--format", "json", "-o", str(path)])
        assert r.exit_code == 0, r.output
        outs.append(json.loads(path.read_text()))
    assert outs[0] == outs[1]
    assert all(e["findings"] for e in outs[0])  # every chip has findings to compare
