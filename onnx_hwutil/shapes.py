"""Inferring every tensor's shape once the inputs are bound (bindings.py): the driver of the layers.

Each layer runs only where the ones before left tensors unresolved: ONNX shape inference with data
propagation; onnxruntime's symbolic shape inference (shapes_ort.py: it follows shapes through
Shape/Gather/Concat/Reshape chains that TorchScript exporters emit); our shape rules for runtime and
quantized ops (contrib_shapes.py); and our own constant folding of small shape subgraphs (shape_folding.py).
"""

from __future__ import annotations

import onnx
from onnx import helper

from .contrib_shapes import hint_shapes
from .limits import MAX_PROPAGATED_ELEMENTS
from .shape_folding import GENERATORS, fold_shape_subgraphs, output_too_big
from .shape_readers import better, constant_values, keep_better, tensor_shapes, unresolved
from .shapes_ort import symbolic_shapes

# Rounds of a layer, each followed by one ONNX inference. A layer stops at the first round that resolves
# nothing more, so these only bound a model that keeps resolving a little per round; the bundled models and
# the test corpus need at most two of either.
# Shape rules: a chain that alternates fused and standard ops takes a round per fused op; 256 leaves room
# for the deepest layer stacks.
CONTRIB_ROUNDS = 256
# Folding: another round helps only where shapes one round unlocks feed a further shape computation (a
# Reshape target built from an earlier Reshape's output shape); 64 follows such chains 64 deep (Swin-T's
# legacy export chains its window padding through all of its blocks: 16 rounds).
FOLD_ROUNDS = 64


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
        if keep_better(known, vi):
            inferred.graph.value_info.append(vi)
    return inferred, notes, known


def _infer_layers(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str], dict]:
    notes: list[str] = []
    big = _big_generator(model)
    if big:
        notes.append(f"onnx data propagation skipped: {big}")
    # Decided once: the later layers only add shapes and fold constants of at most FOLD_LIMIT elements,
    # so no round can create a generator the first one did not see.
    prop = big is None
    try:
        inferred = _infer_once(model, prop)
    except Exception as e:  # onnx raises a zoo of types here; any failure just hands over to the next layer
        notes.append(f"onnx shape inference failed ({_first_line(e)})")
        inferred = model
    # `known` is always tensor_shapes(inferred.graph): each model's value infos are read once.
    known = tensor_shapes(inferred.graph)
    missing = unresolved(inferred, known)
    if not missing:
        return inferred, notes, known

    # Our own layers first: they are exact once every input is bound and cost nothing to load, where
    # onnxruntime's symbolic inference imports sympy (0.3 s). It runs only for what ours leave open (a
    # com.microsoft op our rules do not know, a shape computation too big to fold), then ours again on
    # what it unlocked.
    inferred, known, missing = _own_layers(model, inferred, known, missing, prop, notes)
    if not missing or _data_dependent(inferred, missing):
        return inferred, notes, known
    ort = symbolic_shapes(inferred)
    if ort is not None:
        merged = _merge(inferred, ort, known)
        merged_known = tensor_shapes(merged.graph)
        merged_missing = unresolved(merged, merged_known)
        if len(merged_missing) < len(missing):
            notes.append(f"onnxruntime symbolic shape inference resolved "
                         f"{len(missing) - len(merged_missing)} tensors our layers left open")
            inferred, known, missing = _own_layers(model, merged, merged_known, merged_missing, prop, notes)
    return inferred, notes, known


def _own_layers(model, inferred, known, missing, prop, notes):
    """Our rules for runtime and quantized ops, then constant folding of shape computations: each round
    hands ONNX inference more known shapes, which can unlock the next round (a fused op, then standard
    ops, then the next fused op), so each layer runs until it learns nothing more. Folding rounds work on
    the folded model, each folding only what the last one unlocked; the original nodes come back once, at
    the end (folding is for shapes, not for costs)."""
    layers = ((hint_shapes, CONTRIB_ROUNDS, "shape rules for runtime and quantized ops"),
              (fold_shape_subgraphs, FOLD_ROUNDS, "constant folding of shape computations"))
    for layer, rounds, note in layers:
        learned, folded = 0, False
        for _ in range(rounds):
            if not missing:
                break
            if layer is fold_shape_subgraphs:
                hinted, n = fold_shape_subgraphs(inferred, known)
            else:
                hinted, n = layer(inferred)
            again = _onnx_infer(hinted, prop) if n else inferred
            again_known = tensor_shapes(again.graph) if n else known
            still = unresolved(again, again_known) if n else missing
            if len(still) < len(missing):
                learned += len(missing) - len(still)
                inferred, known, missing = again, again_known, still
                folded = folded or layer is fold_shape_subgraphs
                continue
            if not folded:
                break
            # Stalled on the folded model: ONNX inference over the original nodes, with the folded
            # shapes as hints, can still unlock a round (its data propagation reads what folding cut).
            inferred, known, missing, folded = *_restored(inferred, model, prop), False
        if folded:
            inferred, known, missing = _restored(inferred, model, prop)
        if learned:
            notes.append(f"{note} resolved {learned} more tensors")
    return inferred, known, missing


# Ops whose output size their input *values* decide: no shape inference can make their outputs static.
DATA_DEPENDENT = frozenset({"NonZero", "NonMaxSuppression", "TopK", "Unique", "Compress"})


def _data_dependent(model: onnx.ModelProto, missing: list[str]) -> bool:
    """Every open tensor is computed (through its values or its shape) from an open output of a
    data-dependent op: onnxruntime's symbolic inference could only name their dims (which count as unknown
    here), at seconds of sympy on a detection model's post-processing. A TopK whose k is known is no such
    op: its outputs are static."""
    open_ = set(missing)
    tainted: set[str] = set()
    for node in model.graph.node:  # topological order
        if (node.op_type in DATA_DEPENDENT and any(o in open_ for o in node.output)) or \
                any(i in tainted for i in node.input):
            tainted.update(node.output)
    return open_ <= tainted


def _restored(folded: onnx.ModelProto, model: onnx.ModelProto, prop: bool):
    inferred = _restore_nodes(folded, model, prop)
    known = tensor_shapes(inferred.graph)
    return inferred, known, unresolved(inferred, known)


def declared_dims(model: onnx.ModelProto) -> dict[str, tuple[bool, ...]]:
    """Per tensor whose shape the file declares (value_info, outputs): which dims it gives a value."""
    out = {}
    for vi in (*model.graph.value_info, *model.graph.output):
        t = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and t.HasField("shape"):
            out[vi.name] = tuple(d.HasField("dim_value") for d in t.shape.dim)
    return out


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
            if node.op_type in GENERATORS and node.input and all(i in consts for i in node.input if i):
                feeds = {i: consts[i] for i in node.input if i}
                if output_too_big(node, feeds, MAX_PROPAGATED_ELEMENTS):
                    return f"{node.op_type} node {node.name or node.output[0]!r} generates more than " \
                           f"{MAX_PROPAGATED_ELEMENTS:,} elements from constants"
            for a in node.attribute:
                stack.extend([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs))
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def _merge(base: onnx.ModelProto, extra: onnx.ModelProto, have: dict | None = None) -> onnx.ModelProto:
    """`base` (whose tensor_shapes are `have`) with value infos added from `extra` wherever `extra` knows
    more."""
    have = tensor_shapes(base.graph) if have is None else have
    more = tensor_shapes(extra.graph)
    out = onnx.ModelProto()
    out.CopyFrom(base)
    by_name = {vi.name: vi for vi in extra.graph.value_info}
    by_name.update({vi.name: vi for vi in extra.graph.output})
    for name, (shape, _) in more.items():
        if name in by_name and better(shape, have.get(name, (None, 0))[0]):
            # Symbolic dims left by ORT (e.g. "unk__3") stay unknown: only static dims count.
            vi = out.graph.value_info.add()
            vi.CopyFrom(by_name[name])
    return out


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
