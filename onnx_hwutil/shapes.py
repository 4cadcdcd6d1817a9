"""Inferring every tensor's shape once the inputs are bound (bindings.py).

Three layers, each only where the one before left tensors unresolved: ONNX shape inference with data
propagation; onnxruntime's symbolic shape inference (it follows shapes through Shape/Gather/Concat/Reshape
chains that TorchScript exporters emit); and our own constant folding of small shape subgraphs.
"""

from __future__ import annotations

import contextlib
import io
import logging

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .bindings import declared_dims
from .limits import MAX_PROPAGATED_ELEMENTS

# -- inference ------------------------------------------------------------------------------------------

def tensor_shapes(graph: onnx.GraphProto) -> dict[str, tuple[tuple[int | None, ...] | None, int]]:
    """name -> (shape with None for unknown dims, or None for unknown rank; elem dtype) from value infos."""
    out: dict[str, tuple[tuple[int | None, ...] | None, int]] = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        _keep_better(out, vi)
    for init in graph.initializer:
        out[init.name] = (tuple(init.dims), init.data_type)
    for sparse in graph.sparse_initializer:
        out[sparse.values.name] = (tuple(sparse.dims), sparse.values.data_type)
    return out


def _keep_better(known: dict, vi: onnx.ValueInfoProto) -> bool:
    """Record a value info's shape in `known` if it knows more dims than what is there; say if it did."""
    t = vi.type
    if t.WhichOneof("value") != "tensor_type":
        return False
    dims = declared_dims(vi)
    shape = None if dims is None else tuple(d if type(d) is int else None for d in dims)
    prev = known.get(vi.name)
    if prev is not None and not _better(shape, prev[0]):
        return False
    known[vi.name] = (shape, t.tensor_type.elem_type or (prev[1] if prev else 0))
    return True


def _better(a, b) -> bool:
    return _known(a) > _known(b)


def _known(shape) -> int:
    if shape is None:
        return -1
    return sum(d is not None for d in shape)


def unresolved(model: onnx.ModelProto, known: dict | None = None) -> list[str]:
    """Tensors produced in the main graph whose shape is not fully static."""
    known = tensor_shapes(model.graph) if known is None else known
    bad = []
    for node in model.graph.node:
        for o in node.output:
            if not o:
                continue
            s = known.get(o, (None, 0))[0]
            if s is None or any(d is None for d in s):
                bad.append(o)
    return bad


def _without_declared(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list]:
    """A copy whose intermediate and output shapes are left to inference, and the declared ones. Exporters
    write the traced batch into value_info and outputs; ONNX inference (not strict) keeps such a stale shape
    over the one it computes, while onnxruntime runs the model at the bound batch. Declared shapes return
    only where inference finds nothing (ops it does not know)."""
    declared = [*model.graph.value_info, *model.graph.output]  # read only: `model` is not changed
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    del bare.graph.value_info[:]
    for vi in bare.graph.output:
        if vi.type.HasField("tensor_type"):
            vi.type.tensor_type.ClearField("shape")
    return bare, declared


def infer(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str], dict]:
    """Run the inference layers: (inferred model, notes on which layers were needed, its tensor shapes)."""
    model, declared = _without_declared(model)
    inferred, notes, known = _infer_layers(model)
    for vi in declared:
        if _keep_better(known, vi):
            inferred.graph.value_info.append(vi)
    return inferred, notes, known


def _infer_layers(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str], dict]:
    notes: list[str] = []
    big = _big_generator(model)
    if big:
        notes.append(f"onnx data propagation skipped: {big}")
    # Decided once: the later layers only add shapes and fold constants of at most _FOLD_LIMIT elements,
    # so no round can create a generator the first one did not see.
    prop = big is None
    try:
        inferred = _infer_once(model, prop)
    except Exception as e:  # onnx raises a zoo of types here; any failure just hands over to the next layer
        notes.append(f"onnx shape inference failed ({_first_line(e)})")
        inferred = model
    known = tensor_shapes(inferred.graph)
    missing = unresolved(inferred, known)
    if not missing:
        return inferred, notes, known

    ort = _ort_symbolic(inferred)
    if ort is not None:
        merged = _merge(inferred, ort)
        if len(unresolved(merged)) < len(missing):
            notes.append(f"onnxruntime symbolic shape inference resolved "
                         f"{len(missing) - len(unresolved(merged))} tensors onnx left open")
            inferred, missing = merged, unresolved(merged)
    # Our rules for runtime and quantized ops, then constant folding of shape computations: each round
    # hands ONNX inference more known shapes, which can unlock the next round (a fused op, then standard
    # ops, then the next fused op), so each layer runs until it learns nothing more.
    layers = ((_contrib_hints, _CONTRIB_ROUNDS, "shape rules for runtime and quantized ops"),
              (_fold_shape_subgraphs, _FOLD_ROUNDS, "constant folding of shape computations"))
    for layer, rounds, note in layers:
        learned = 0
        for _ in range(rounds):
            if not missing:
                break
            hinted, n = layer(inferred)
            if not n:
                break
            again = _onnx_infer(hinted, prop)
            if layer is _fold_shape_subgraphs:
                again = _restore_nodes(again, model, prop)  # folding is for shapes: keep every original node
            still = unresolved(again)
            if len(still) >= len(missing):
                break
            learned += len(missing) - len(still)
            inferred, missing = again, still
        if learned:
            notes.append(f"{note} resolved {learned} more tensors")
    return inferred, notes, tensor_shapes(inferred.graph)


def file_shapes(model: onnx.ModelProto) -> dict:
    """Every tensor's shape as the file itself has it (its own batch), by one ONNX inference."""
    return tensor_shapes(_onnx_infer(_without_declared(model)[0]).graph)


def _onnx_infer(model: onnx.ModelProto, data_prop: bool | None = None) -> onnx.ModelProto:
    """ONNX inference that never fails: where it raises, the model comes back as it was."""
    try:
        return _infer_once(model, data_prop)
    except Exception:  # onnx raises a zoo of types here
        return model


def _infer_once(model: onnx.ModelProto, data_prop: bool | None = None) -> onnx.ModelProto:
    """ONNX inference with data propagation (it reads shape computations), unless a generator of constants
    would make it build more values than any shape computation has (None: look, here)."""
    if data_prop is None:
        data_prop = _big_generator(model) is None
    return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=data_prop)


def _big_generator(model: onnx.ModelProto) -> str | None:
    """The first node, anywhere in the model, whose inputs are all constants and whose output has more than
    MAX_PROPAGATED_ELEMENTS elements (Range(0, 2^62, 1) is 200 bytes on disk): onnx's data propagation
    would materialize it. None if there is none."""
    stack = [model.graph]
    while stack:
        g = stack.pop()
        consts = constant_values(g)
        for node in g.node:
            if node.op_type in _GENERATORS and node.input and all(i in consts for i in node.input if i):
                feeds = {i: consts[i] for i in node.input if i}
                if _output_too_big(node, feeds, MAX_PROPAGATED_ELEMENTS):
                    return f"{node.op_type} node {node.name or node.output[0]!r} generates more than " \
                           f"{MAX_PROPAGATED_ELEMENTS:,} elements from constants"
            for a in node.attribute:
                stack.extend([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs))
    return None


def constant_values(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """The values a graph holds as data: initializers and Constant nodes whose payload the loader kept
    (at most loader.SMALL_TENSOR_ELEMENTS elements: shape vectors, axes, scalars)."""
    out: dict[str, np.ndarray] = {}
    tensors = [(i.name, i) for i in graph.initializer]
    tensors += [(n.output[0], a.t) for n in graph.node if n.op_type == "Constant" and n.output
                for a in n.attribute if a.name == "value"]
    for name, t in tensors:
        if t.raw_data or _has_typed_data(t):
            with contextlib.suppress(Exception):  # a dtype numpy cannot hold: not a value we need
                out[name] = numpy_helper.to_array(t)
    return out


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def _ort_symbolic(model: onnx.ModelProto) -> onnx.ModelProto | None:
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    except ImportError:
        return None
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            # The steps of SymbolicShapeInference.infer_shapes, without its last one: when some shapes stay
            # open it saves "sym_shape_infer_temp.onnx" into the working directory, and we write nothing.
            ssi = SymbolicShapeInference(2**31 - 1, True, False, 0)
            ssi._preprocess(_payloadless_as_inputs(model))
            # Each round resolves what the last one unlocked; real models settle in a few. A malformed one
            # can keep it going forever (its own loop has no bound), so ours does.
            for _ in range(_ORT_ROUNDS):
                if not ssi.run_:
                    break
                ssi._infer_impl()
            ssi._update_output_from_vi()
            return ssi.out_mp_
    except Exception:  # its failure modes are asserts and KeyErrors deep inside; we just fall through
        return None


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
    return n > 0 and not t.raw_data and not _has_typed_data(t) and not t.string_data


def _merge(base: onnx.ModelProto, extra: onnx.ModelProto) -> onnx.ModelProto:
    """`base` with value infos added from `extra` wherever `extra` knows more."""
    have = tensor_shapes(base.graph)
    more = tensor_shapes(extra.graph)
    out = onnx.ModelProto()
    out.CopyFrom(base)
    by_name = {vi.name: vi for vi in extra.graph.value_info}
    by_name.update({vi.name: vi for vi in extra.graph.output})
    for name, (shape, _) in more.items():
        if name in by_name and _better(shape, have.get(name, (None, 0))[0]):
            # Symbolic dims left by ORT (e.g. "unk__3") stay unknown: only static dims count.
            vi = out.graph.value_info.add()
            vi.CopyFrom(by_name[name])
    return out


# -- own fallback: fold shape computations --------------------------------------------------------------

_FOLDABLE = {"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Add", "Sub", "Mul",
             "Div", "Floor", "Ceil", "Range", "Equal", "Where", "ConstantOfShape", "ReduceProd", "Max", "Min",
             "Neg", "Abs", "Expand", "Identity", "Size", "Constant", "Sqrt", "Not", "And", "Or", "Less",
             "Greater", "Mod", "Reshape", "Transpose"}
_FOLD_ROUNDS = 8
_ORT_ROUNDS = 32
_CONTRIB_ROUNDS = 256
_FOLD_LIMIT = 1024  # elements: shape subgraphs are tiny; anything larger is real data


def _fold_shape_subgraphs(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Evaluate nodes whose inputs are known small constants (or the shapes of static tensors) and turn
    their outputs into initializers, so that a second ONNX inference sees Reshape targets as constants."""
    from onnx.reference import ReferenceEvaluator

    shapes = tensor_shapes(model.graph)
    consts: dict[str, np.ndarray] = {}
    for init in model.graph.initializer:
        n = int(np.prod(init.dims)) if init.dims else 1
        if n <= _FOLD_LIMIT and (init.raw_data or _has_typed_data(init)):
            with contextlib.suppress(Exception):
                consts[init.name] = numpy_helper.to_array(init)
    folded = 0
    opset = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in _FOLDABLE:
            continue
        if node.op_type in ("Shape", "Size"):
            s = shapes.get(node.input[0], (None, 0))[0]
            if s is None or any(d is None for d in s):
                continue
            if node.op_type == "Size":
                consts[node.output[0]] = np.array(int(np.prod(s)), dtype=np.int64)
            else:
                lo, hi = _attr(node, "start", 0), _attr(node, "end", None)
                consts[node.output[0]] = np.array(s, dtype=np.int64)[lo:hi]
            folded += 1
            continue
        if not all((not i) or i in consts for i in node.input):
            continue
        feeds = {i: consts[i] for i in node.input if i}
        if _output_too_big(node, feeds):
            continue  # a generator asked for more than shape math ever needs: never allocate it
        try:
            inputs = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                      for k, v in feeds.items()]
            outputs = [helper.make_tensor_value_info(o, 0, None) for o in node.output if o]
            sub = helper.make_model(helper.make_graph([node], "fold", inputs, outputs), opset_imports=opset)
            outs = ReferenceEvaluator(sub).run(None, feeds)
        except Exception:  # the reference evaluator rejects what it cannot run; that node stays unfolded
            continue
        if all(np.asarray(o).size <= _FOLD_LIMIT for o in outs):
            for name, value in zip([o for o in node.output if o], outs, strict=False):
                consts[name] = np.asarray(value)
            folded += 1
    if not folded:
        return model, 0
    out = onnx.ModelProto()
    out.CopyFrom(model)
    produced = {o for n in model.graph.node for o in n.output}
    existing = {i.name for i in model.graph.initializer}
    keep = []
    for node in out.graph.node:
        if node.output and all((not o) or o in consts for o in node.output) and node.op_type != "Constant":
            continue  # replaced by initializers below
        keep.append(node)
    del out.graph.node[:]
    out.graph.node.extend(keep)
    for name, value in consts.items():
        if name in produced and name not in existing:
            out.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
    return out, folded


def _contrib_hints(model: onnx.ModelProto, rounds: int = 64) -> tuple[onnx.ModelProto, int]:
    """Value infos for outputs that no inference layer shaped, from their ops' contracts; rules
    feed each other (a chain of fused ops), so they run in graph order until nothing new is learned."""
    from .contrib_shapes import infer_output_shapes

    known = tensor_shapes(model.graph)
    added: dict[str, tuple[tuple[int, ...], int]] = {}
    for _ in range(rounds):
        learned = 0
        for node in model.graph.node:
            if all((not o) or _static(known.get(o, (None, 0))[0]) or o in added for o in node.output):
                continue
            ins = []
            for i in node.input:
                s = added.get(i, known.get(i, (None, 0)))[0]
                ins.append(s if _static(s) else None)
            outs = infer_output_shapes(node, ins)
            if not outs:
                continue
            dtype = known.get(node.input[0], (None, 1))[1] if node.input else 1
            for o, shape in zip(node.output, outs, strict=False):
                if o and shape is not None and o not in added and not _static(known.get(o, (None, 0))[0]):
                    out_dtype = known.get(o, (None, 0))[1] or dtype
                    added[o] = (tuple(int(d) for d in shape), out_dtype)
                    learned += 1
        if not learned:
            break
    if not added:
        return model, 0
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.graph.value_info.extend(helper.make_tensor_value_info(n, dt, list(sh))
                                for n, (sh, dt) in added.items())
    return out, len(added)


def _static(shape) -> bool:
    return shape is not None and all(isinstance(d, int) for d in shape)


_GENERATORS = ("ConstantOfShape", "Expand", "Tile", "Range")


def _output_too_big(node: onnx.NodeProto, feeds: dict[str, np.ndarray], limit: int = _FOLD_LIMIT) -> bool:
    """Generators whose output size their inputs decide; estimate it before evaluating anything."""
    vals = [feeds.get(i) for i in node.input]
    try:
        if node.op_type == "ConstantOfShape" and vals and vals[0] is not None:
            return float(np.prod(np.abs(vals[0].astype(np.float64)))) > limit
        if node.op_type in ("Expand", "Tile") and len(vals) > 1 and vals[1] is not None:
            return float(np.prod(np.abs(vals[1].astype(np.float64)))) * max(vals[0].size, 1) > limit
        if node.op_type == "Range" and len(vals) == 3:
            start, stop, delta = (float(np.asarray(v).reshape(-1)[0]) for v in vals)
            return delta == 0 or abs((stop - start) / delta) > limit
    except (ValueError, TypeError, OverflowError, IndexError, AttributeError):
        return True
    return False


def _restore_nodes(inferred: onnx.ModelProto, original: onnx.ModelProto,
                   data_prop: bool | None = None) -> onnx.ModelProto:
    """The original node list (folding is for shapes, not for costs) with the folded model's shapes as
    hints, inferred once more so that subgraphs and graph outputs get their shapes from them too."""
    out = onnx.ModelProto()
    out.CopyFrom(original)
    del out.graph.value_info[:]
    out.graph.value_info.extend(inferred.graph.value_info)
    known_init = {i.name for i in original.graph.initializer}
    for init in inferred.graph.initializer:
        if init.name not in known_init:
            out.graph.value_info.append(helper.make_tensor_value_info(init.name, init.data_type, init.dims))
    typed_outputs = {o.name: o for o in inferred.graph.output}
    for o in out.graph.output:
        if o.name in typed_outputs:
            o.CopyFrom(typed_outputs[o.name])
    return _onnx_infer(out, data_prop)


def _has_typed_data(t: onnx.TensorProto) -> bool:
    return bool(t.float_data or t.int32_data or t.int64_data or t.double_data or t.uint64_data)


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default
