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


@pytest.mark.parametrize("name", ["resnet18", "bert_base"])
def test_another_batch_of_a_file_shares_its_structure_and_has_its_own_tensors(name):
    path = f"models/{name}.onnx"
    c = BindCache()
    one = bind(path, Bindings({}, {}, 1), c)
    pdom = one.graph.post_dominators
    three = bind(path, Bindings({}, {}, 3), c)
    assert three.graph.dag is one.graph.dag and three.graph.nodes is one.graph.nodes
    assert three.graph.post_dominators is pdom  # fusion's region rules: worked out once per file
    alone = bind(path, Bindings({}, {}, 3))  # no other binding to share with
    assert _shapes(three) == _shapes(alone) != _shapes(one)
    assert [n.name for n in three.graph.nodes] == [n.name for n in alone.graph.nodes]
    assert three.graph.post_dominators == alone.graph.post_dominators
    assert Profile(three).totals == Profile(alone).totals


def test_a_graph_of_other_nodes_shares_nothing(tmp_path):
    from builders import conv_relu, save

    from onnx_hwutil.graph import Graph

    a = bind(save(conv_relu(), tmp_path / "a.onnx"), Bindings({}, {}, 1))
    other = conv_relu()
    other.graph.node[1].op_type = "Sigmoid"  # the same names and edges, another op
    b = Graph(other.graph, a.graph.opsets, like=a.graph)
    assert b.dag is not a.graph.dag and b.by_name[b.nodes[1].name].op_type == "Sigmoid"
