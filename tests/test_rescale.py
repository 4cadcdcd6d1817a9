"""Other batches extrapolated from batches 1 and 2 (rescale.py): exact where a third, inferred batch says the
shapes are affine in the batch, and refused where they are not."""

import numpy as np
import pytest
from builders import init, model, save, vi
from onnx import TensorProto as T
from onnx import helper

from onnx_hwutil.analysis import Analyzer, Point
from onnx_hwutil.bindings import Bindings
from onnx_hwutil.profile import Profile, bind
from onnx_hwutil.rescale import PROBE_BATCH


@pytest.mark.parametrize("name", ["resnet18", "bert_base"])
def test_an_extrapolated_batch_is_the_inferred_one(name):
    path = f"models/{name}.onnx"
    a = Analyzer()
    assert a._affine(path)
    for batch in (3, 16):
        guess, real = a.bound(path, batch), bind(path, Bindings({}, {}, batch))
        assert guess is not real and guess.inputs == real.inputs
        assert {n: t.shape for n, t in guess.graph.tensors.items()} == \
            {n: t.shape for n, t in real.graph.tensors.items()}
        assert [nc.cost for nc in Profile(guess).costs.nodes] == [nc.cost for nc in Profile(real).costs.nodes]
    # and the kernels the passes chose at batches 1, 2 and 4 are reused, costed at the new batch
    s = a.run(Point(path, "h100-sxm5", 16, "bf16", "runtime"))
    fresh = Analyzer()
    fresh._affine = lambda m: False  # the same point the slow way: inferred and fused at 16
    t = fresh.run(Point(path, "h100-sxm5", 16, "bf16", "runtime"))
    assert s.to_dict(True) == t.to_dict(True)


def test_a_dim_that_is_not_affine_in_the_batch_is_inferred(tmp_path):
    # y has batch^2 elements: from batches 1 and 2 a straight line would give 10 at batch 4, not 16
    m = model([helper.make_node("Shape", ["x"], ["s"], start=0, end=1),
               helper.make_node("Mul", ["s", "s"], ["sq"]),
               helper.make_node("ConstantOfShape", ["sq"], ["y"],
                                value=helper.make_tensor("v", T.FLOAT, [1], [1.0])),
               helper.make_node("MatMul", ["x", "w"], ["z"])],
              [vi("x", T.FLOAT, ["batch", 8])], [vi("y", T.FLOAT, [None]), vi("z", T.FLOAT, ["batch", 4])],
              [init("w", (8, 4), np.float32)])
    path = save(m, tmp_path / "square.onnx")
    a = Analyzer()
    assert a.bound(path, PROBE_BATCH).graph.tensor("y").shape == (16,)
    assert not a._affine(path)
    assert a.bound(path, 8).graph.tensor("y").shape == (64,)  # inferred, not extrapolated to 22


def test_a_batch_1_that_infers_another_way_still_extrapolates_from_batch_2():
    # At batch 1 ONNX's own inference resolves fewer of a legacy GPT-2's tensors (our folding resolves 234
    # more there, 18 at batches 2 and 4): the shapes are affine all the same, and a batch taken off the line
    # carries batch 2's notes, which are the ones inference gives it
    path = "corpus/gpt2_l4_legacy_op14.onnx"
    a = Analyzer(dims={"sequence": 128})
    one, two = a.bound(path, 1), a.bound(path, 2)
    assert one.shape_notes != two.shape_notes == a.bound(path, PROBE_BATCH).shape_notes
    assert a._affine(path)
    guess, real = a.bound(path, 8), bind(path, Bindings({}, {"sequence": 128}, 8))
    assert guess.shape_notes == real.shape_notes and guess.inputs == real.inputs
    assert {n: t.shape for n, t in guess.graph.tensors.items()} == \
        {n: t.shape for n, t in real.graph.tensors.items()}
    assert [nc.cost for nc in Profile(guess).costs.nodes] == [nc.cost for nc in Profile(real).costs.nodes]
