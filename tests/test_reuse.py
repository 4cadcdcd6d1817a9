"""The work an Analyzer reuses instead of redoing (issue 16) gives what redoing it gives: one shape inference
for two bindings that bind the same shapes, one fusion partition for the precisions of one graph, and
folding results kept across rounds and bindings."""

import pytest

from onnx_hwutil import shape_folding
from onnx_hwutil.analysis import Analyzer, Point, _partition_key
from onnx_hwutil.bindings import Bindings
from onnx_hwutil.fusion import fuse
from onnx_hwutil.profile import BindCache, Profile, bind

PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")


def _shapes(bound):
    return {n: (t.shape, t.dtype, t.const) for n, t in bound.graph.tensors.items()}


@pytest.mark.parametrize("name", ["resnet18", "bert_base"])
def test_the_default_batch_and_batch_1_share_one_inference(name):
    path = f"models/{name}.onnx"
    c = BindCache()
    default, one = bind(path, Bindings(), c), bind(path, Bindings({}, {}, 1), c)
    assert default.graph is one.graph  # inferred once
    for b in (None, 1):
        alone = bind(path, Bindings({}, {}, b))
        cached = default if b is None else one
        assert _shapes(cached) == _shapes(alone)
        assert (cached.inputs, cached.symbols, cached.shape_notes, cached.batch_defaulted) == \
            (alone.inputs, alone.symbols, alone.shape_notes, alone.batch_defaulted)
    assert [nc.cost for nc in Profile(default, "fp16").costs.nodes] == \
        [nc.cost for nc in Profile(one, "fp16").costs.nodes]


@pytest.mark.parametrize("name", ["resnet18", "bert_base", "mobilenet_v2"])
@pytest.mark.parametrize("fusion", ["runtime", "aggressive"])
def test_a_partition_reused_across_precisions_is_the_one_the_passes_choose(name, fusion):
    # Analyzer._fuse_at reuses one precision's partition at another: the passes must read kinds and the
    # graph, never bytes. A pass that starts reading bytes fails here, not silently in a what-if.
    path = f"models/{name}.onnx"
    a = Analyzer()
    for prec in PRECISIONS:
        reused = a.fused(path, None, prec, fusion)
        fresh = fuse(Profile(bind(path, Bindings()), prec), fusion)
        assert _partition_key(reused.partition) == _partition_key(fresh.partition)
        assert reused.pass_merges == fresh.pass_merges
        assert reused.totals == fresh.totals


def test_an_analyzer_with_warm_caches_answers_as_a_fresh_one():
    path = "models/vit_b_16.onnx"
    a = Analyzer()
    s = [a.run(Point(path, "h100-sxm5", b, p, "runtime")) for b in (None, 1, 2) for p in ("fp16", "int8")]
    shape_folding._EVALUATED.clear()
    t = [Analyzer().run(Point(path, "h100-sxm5", b, p, "runtime")) for b in (None, 1, 2)
         for p in ("fp16", "int8")]
    assert [x.to_dict(True) for x in s] == [x.to_dict(True) for x in t]
