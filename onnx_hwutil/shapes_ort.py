"""The one place that calls onnxruntime's symbolic shape inference, through its private steps.

Its public `infer_shapes` saves "sym_shape_infer_temp.onnx" into the working directory when shapes stay
open and loops without a bound on a malformed model; we run its steps ourselves to avoid both. Those steps
(`_preprocess`, `_infer_impl`, `run_`, `_update_output_from_vi`, `out_mp_`) are onnxruntime internals: an
onnxruntime that renames them only makes this layer return None, and the next layer takes over.
"""

from __future__ import annotations

import contextlib
import io
import logging

import onnx
from onnx import helper

from .shape_readers import has_typed_data, tensor_shapes

# Rounds of its inference loop: each resolves what the last one unlocked, and the bundled models and the
# test corpus settle in one, but a malformed model can keep it going forever (its own loop has no bound).
ORT_ROUNDS = 32
# The Slice end it reads as "to the end": onnxruntime's own default (infer_shapes' int_max).
_ORT_INT_MAX = 2**31 - 1
# Where it cannot read a target shape's values it makes one symbolic dim per entry, so a target of 2^40
# entries never returns. No tensor has more dims than numpy's limit (64 since numpy 2): a longer target is
# a broken model, which the layers after this one handle without onnxruntime.
_MAX_RANK = 64
_TARGET_INPUT = {"Reshape": 1, "ConstantOfShape": 0}  # ops whose output rank is an input's length


def symbolic_shapes(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """`model` with the value infos onnxruntime's symbolic inference finds; None where it is not installed
    or fails."""
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    except ImportError:
        return None
    if _overlong_target(model):
        return None
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            # auto_merge: where two symbolic dims must agree, merge them rather than give up on the model
            ssi = SymbolicShapeInference(_ORT_INT_MAX, True, False, 0)
            ssi._preprocess(_payloadless_as_inputs(model))
            for _ in range(ORT_ROUNDS):
                if not ssi.run_:
                    break
                ssi._infer_impl()
            ssi._update_output_from_vi()
            return ssi.out_mp_
    except Exception:  # its failure modes are asserts and KeyErrors deep inside; we just fall through
        return None


def _overlong_target(model: onnx.ModelProto) -> bool:
    known = tensor_shapes(model.graph)
    for node in model.graph.node:
        slot = _TARGET_INPUT.get(node.op_type)
        if slot is not None and len(node.input) > slot:
            shape = known.get(node.input[slot], (None, 0))[0]
            if shape and len(shape) == 1 and shape[0] is not None and shape[0] > _MAX_RANK:
                return True
    return False


def _payloadless_as_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """ORT's inference reads every initializer it meets; those whose payload we dropped become typed
    graph inputs instead, which it handles by shape alone."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    keep, moved = [], []
    for init in out.graph.initializer:
        if _is_payloadless(init):
            moved.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
        else:
            keep.append(init)
    if moved:
        del out.graph.initializer[:]
        out.graph.initializer.extend(keep)
        declared = {v.name for v in out.graph.input}
        out.graph.input.extend(v for v in moved if v.name not in declared)
    return out


def _is_payloadless(t: onnx.TensorProto) -> bool:
    n = 1
    for d in t.dims:
        n *= d
    return n > 0 and not t.raw_data and not has_typed_data(t) and not t.string_data
