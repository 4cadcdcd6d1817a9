"""Binding the user's shapes and dims to the model's inputs, then inferring every tensor's shape.

Three layers, each only where the one before left tensors unresolved: ONNX shape inference with data
propagation; onnxruntime's symbolic shape inference (it follows shapes through Shape/Gather/Concat/Reshape
chains that TorchScript exporters emit); and our own constant folding of small shape subgraphs.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import HwUtilError, NoBatchDim
from .limits import MAX_DIM, MAX_PROPAGATED_ELEMENTS

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Bindings:
    """What the user told us about input shapes: whole shapes, named dims, and the batch size."""

    shapes: dict[str, Shape] = field(default_factory=dict)
    dims: dict[str, int] = field(default_factory=dict)
    batch: int | None = None
    # Several models share these bindings (compare, report, sweep, diff): each takes the ones that name its
    # inputs and dims, and `MODEL:NAME` shapes (MODEL a path or a file name) only for that model.
    scoped: bool = False

    def for_model(self, path: str, model: onnx.ModelProto) -> Bindings:
        if not self.scoped:
            return self
        names = {v.name for v in graph_inputs(model.graph)}
        symbols = {d for v in graph_inputs(model.graph) for d in _dims_of(v) or () if isinstance(d, str)}
        shapes = {}
        for key, shape in self.shapes.items():
            owner, name = _split_scope(key, [path])
            if owner == path or (owner is None and name in names):
                shapes[name] = shape
        dims = {k: v for k, v in self.dims.items() if k in symbols}
        return Bindings(shapes, dims, self.batch)


def _split_scope(key: str, models: list[str]) -> tuple[str | None, str]:
    """`MODEL:NAME` -> (the model it names, NAME); a plain name (even one with a colon, like TensorFlow's
    `input:0`) -> (None, key)."""
    for m in models:
        for prefix in (m, os.path.basename(m)):
            if key.startswith(prefix + ":"):
                return m, key[len(prefix) + 1:]
    return None, key


def check_scoped(models: list[str], b: Bindings) -> None:
    """Every --shape and --dim must apply to at least one of the models: a typo is an error, not a no-op."""
    from .loader import load_model

    inputs, symbols = {}, {}
    for m in models:
        vis = graph_inputs(load_model(m).graph)
        inputs[m] = {v.name for v in vis}
        symbols[m] = {d for v in vis for d in _dims_of(v) or () if isinstance(d, str)}
    for key in b.shapes:
        owner, name = _split_scope(key, models)
        targets = [owner] if owner else [m for m in models if name in inputs[m]]
        if not targets or name not in inputs[targets[0]]:
            where = owner or "any of the models"
            raise HwUtilError(f"--shape {key}=...: no input {name!r} in {where}; their inputs: "
                              + "; ".join(f"{os.path.basename(m)}: {', '.join(sorted(inputs[m]))}"
                                          for m in models))
    for sym in b.dims:
        if not any(sym in symbols[m] for m in models):
            raise HwUtilError(f"--dim {sym}=...: none of the models has a symbolic dim {sym!r}")


@dataclass(frozen=True)
class Bound:
    """Every input's shape, the symbols' values, notes for the output, and, for a file that fixes its
    batch, (the file's batch, the batch asked for): the model must be re-batched before inference."""

    shapes: dict[str, Shape]
    values: dict[str, int]
    notes: list[str]
    rebatch: tuple[int, int] | None = None
    batch_defaulted: bool = False  # an unbound batch dim was taken as 1
    rebatched: set[str] = field(default_factory=set)  # the inputs whose dim 0 is the re-batched batch


def parse_shape_flag(text: str) -> tuple[str, Shape]:
    """`NAME=1x3x224x224` (or with commas; `NAME=` for a scalar)."""
    name, sep, dims = text.rpartition("=")
    if not sep or not name:
        raise HwUtilError(f"--shape {text!r}: expected NAME=DIMS, for example input=1x3x224x224")
    parts = [p for p in re.split(r"[x,]", dims.strip()) if p.strip()]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise HwUtilError(f"--shape {text!r}: dims must be integers separated by 'x'") from None
    if any(d < 0 for d in shape):
        raise HwUtilError(f"--shape {text!r}: dims must not be negative")
    return name, shape


def parse_dim_flag(text: str) -> tuple[str, int]:
    name, sep, value = text.rpartition("=")
    if not sep or not name:
        raise HwUtilError(f"--dim {text!r}: expected NAME=VALUE, for example batch=8")
    try:
        v = int(value)
    except ValueError:
        raise HwUtilError(f"--dim {text!r}: value must be an integer") from None
    if v < 0:
        raise HwUtilError(f"--dim {text!r}: value must not be negative")
    return name, v


def graph_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """Real inputs: IR < 4 files also list every initializer as an input."""
    inits = {i.name for i in graph.initializer} | {s.values.name for s in graph.sparse_initializer}
    return [v for v in graph.input if v.name not in inits]


# Names exporters write for "unknown" (paddle2onnx and others write "?" for every dynamic dim): each is its
# own unknown, not one symbol shared by every dim that carries it.
_ANONYMOUS = {"?", "-1", "none", "null", "unknown", "unk", "dynamic", "dyn"}
# A leading dim with one of these names (or none) is a batch: unbound, it defaults to 1 in every command.
_BATCH_NAME = re.compile(r"^(n|b|bs|bsz|batch|batches|batch_?size|.*batch.*)$", re.IGNORECASE)


def is_batch_like(dim: int | str | None) -> bool:
    return dim is None or (isinstance(dim, str) and bool(_BATCH_NAME.match(dim)))


def _dims_of(vi: onnx.ValueInfoProto) -> list[int | str | None] | None:
    """Declared dims: int for static, str for named, None for unnamed/unknown; None if rank unknown."""
    t = vi.type
    if t.WhichOneof("value") != "tensor_type":
        return None
    tt = t.tensor_type
    if not tt.HasField("shape"):
        return None
    out: list[int | str | None] = []
    for d in tt.shape.dim:
        which = d.WhichOneof("value")
        if which == "dim_value" and d.dim_value >= 0:
            out.append(d.dim_value)
        elif which == "dim_param" and d.dim_param.strip() and d.dim_param.strip().lower() not in _ANONYMOUS:
            out.append(d.dim_param)
        else:  # unnamed, or a negative dim_value some exporters write for "dynamic"
            out.append(None)
    return out


def bind_inputs(model: onnx.ModelProto, b: Bindings) -> Bound:
    """Resolve every input's shape, or an error listing what is unbound. Without --batch, an unbound leading
    dim that names a batch (or has no name) is batch 1, and a note says so: one rule for every command. A
    file that fixes its batch (no input has a symbolic leading dim) takes --batch, or a --shape that differs
    only in dim 0, by re-batching: the inputs whose dim 0 is the file's batch get the new one."""
    _check_sizes(b)
    inputs = graph_inputs(model.graph)
    names = [v.name for v in inputs]
    for name in b.shapes:
        if name not in names:
            raise HwUtilError(f"--shape {name}=...: the model has no input {name!r}; its inputs are: "
                              + ", ".join(names))
    declared = {v.name: _dims_of(v) for v in inputs}
    symbols = {d for dims in declared.values() if dims for d in dims if isinstance(d, str)}
    for sym in b.dims:
        if sym not in symbols:
            known = ", ".join(sorted(symbols)) or "none"
            raise HwUtilError(f"--dim {sym}=...: the model has no symbolic dim {sym!r}; its symbolic dims: "
                              f"{known}")

    values = dict(b.dims)
    # --batch binds the symbol that sits at position 0 of the inputs.
    if b.batch is not None:
        lead = {dims[0] for dims in declared.values() if dims and isinstance(dims[0], str)}
        for sym in lead:
            if sym in values and values[sym] != b.batch:
                raise HwUtilError(f"--batch {b.batch} conflicts with --dim {sym}={values[sym]}")
            values[sym] = b.batch

    shapes: dict[str, Shape] = {}
    unbound: list[str] = []
    notes: list[str] = []
    fixed = _file_batch(declared)
    batched = {n for n, d in declared.items() if fixed is not None and d and len(d) >= 2 and d[0] == fixed}
    defaulted = False
    bound_batch = False  # did --batch land on some input (a symbol, an unnamed dim, a re-batch)?
    rebatch = None
    if fixed is not None and b.batch is not None and b.batch != fixed:
        rebatch = (fixed, b.batch)
    where = {s: f"--dim {s}={v}" for s, v in b.dims.items()}
    where.update({s: f"--batch {b.batch}" for s in values if s not in b.dims})
    # Whole shapes first: the symbols they bind apply to every other input that names them.
    for name in names:
        if name not in b.shapes:
            continue
        dims, given = declared[name], b.shapes[name]
        flag = f"--shape {name}={'x'.join(map(str, given))}"
        if dims is not None and len(dims) != len(given):
            raise HwUtilError(f"{flag}: input {name!r} has rank {len(dims)} ({_fmt_dims(dims)}), "
                              f"not {len(given)}")
        for i, (d, g) in enumerate(zip(dims, given, strict=True) if dims is not None else ()):
            if isinstance(d, int) and d != g:
                if i == 0 and len(dims) >= 2 and _all_fixed(declared) and rebatch in (None, (d, g)):
                    # a file with a fixed batch, asked for another by a whole shape: re-batch it, and every
                    # input that leads with the same dim with it
                    rebatch = (d, g)
                    batched = {n for n, x in declared.items() if x and len(x) >= 2 and x[0] == d}
                    continue
                raise HwUtilError(f"{flag}: dim {i} of input {name!r} is fixed at {d} in the model, not {g}"
                                  + (f" (only dim 0, the batch, can be re-batched; {rebatch and 'already'} "
                                     f"set to {rebatch[1]})" if rebatch and i == 0 else ""))
            if isinstance(d, str):
                if d in values and values[d] != g:
                    raise HwUtilError(f"{flag} sets dim {d!r} to {g}, but {where[d]} sets it to {values[d]}")
                values[d] = g
                where.setdefault(d, flag)
        shapes[name] = given
    for name in names:
        dims = declared[name]
        if name in b.shapes:
            continue
        if dims is None:
            unbound.append(f"input {name!r} has no declared shape (--shape {name}=DIMS)")
            continue
        resolved: list[int] = []
        for i, d in enumerate(dims):
            if i == 0 and rebatch is not None and name in batched:
                resolved.append(rebatch[1])
                bound_batch = True
            elif isinstance(d, int):
                resolved.append(d)
            elif isinstance(d, str) and d in values:
                resolved.append(values[d])
                bound_batch |= i == 0 and b.batch is not None and values[d] == b.batch
            elif i == 0 and b.batch is None and is_batch_like(d):
                if isinstance(d, str):
                    values[d] = 1
                resolved.append(1)
                defaulted = True
                what = f"batch dim {d!r}" if isinstance(d, str) else "dim 0 (unnamed)"
                notes.append(f"input {name!r}: {what} not bound, taken as a batch of 1 (--batch N, or "
                             "--shape if it is not a batch)")
            elif isinstance(d, str):
                hint = f"--dim {d}=N" + (" or --batch N" if i == 0 else "")
                unbound.append(f"input {name!r} dim {i} {d!r} ({hint})")
            elif i == 0 and b.batch is not None:
                resolved.append(b.batch)
                bound_batch = True
            else:
                known = [values.get(x, x) if isinstance(x, str) else x for x in dims]
                unbound.append(f"input {name!r} dim {i} unnamed (--shape {name}={_fmt_dims(known, 'N')})")
        if len(resolved) == len(dims):
            shapes[name] = tuple(resolved)
    if unbound:
        raise HwUtilError("unbound dims: " + "; ".join(unbound))
    for name, s in shapes.items():
        dims = declared[name]
        # A zero past length is how a decoder's prefill is written, so zero is legal in general; a bound
        # leading (batch) dim of zero is not: nothing would run.
        if s and s[0] == 0 and (dims is None or not isinstance(dims[0], int)):
            how = where.get(dims[0], f"--shape {name}=...") if dims and isinstance(dims[0], str) else \
                f"--shape {name}=..."
            raise HwUtilError(f"{how}: input {name!r} gets a batch (dim 0) of 0; it must be at least 1")
    if b.batch is not None and not bound_batch and not (fixed == b.batch and batched):
        leads = {d[0] for d in declared.values() if d and len(d) >= 2}
        if _all_fixed(declared) and len(leads) == 1:
            raise HwUtilError(f"--batch {b.batch}: every input fixes dim 0 at {leads.pop()}; if that is the "
                              f"batch, re-batch with --shape (e.g. --shape {names[0]}={b.batch}x...)")
        raise NoBatchDim(f"--batch {b.batch}: the model has no batch dim to set (its inputs are "
                          + ", ".join(f"{n}={_fmt_dims(list(s))}" for n, s in shapes.items())
                          + "); bind shapes with --shape instead")
    if rebatch:
        if rebatch[1] < 1:
            raise HwUtilError(f"input batch {rebatch[1]}: a batch must be at least 1")
        notes.append(f"the file fixes the batch at {rebatch[0]}: re-batched to {rebatch[1]} in memory")
    # The inputs that now lead with the new batch: not one a --shape kept at the file's batch.
    moved = {n for n in batched if rebatch and shapes.get(n, (None,))[:1] == (rebatch[1],)}
    return Bound(shapes, values, notes, rebatch, defaulted, moved)


def _all_fixed(declared: dict[str, list | None]) -> bool:
    return all(isinstance(d[0], int) for d in declared.values() if d)


def _file_batch(declared: dict[str, list | None]) -> int | None:
    """The batch a file fixes: 1, when no input has a symbolic or unnamed leading dim and some input of rank
    2 or more leads with 1 (those are the batched inputs; others, a lookup table [8, 8] or a text [3, 5], do
    not depend on the batch). A rank-1 input is more often a length or an index than a batch, and a leading
    dim other than 1 may be a sequence (seq-first exports): a --shape re-batches those explicitly."""
    leads = [dims[0] for dims in declared.values() if dims]
    if not leads or any(not isinstance(d, int) for d in leads):
        return None
    return 1 if any(dims and len(dims) >= 2 and dims[0] == 1 for dims in declared.values()) else None


def _check_sizes(b: Bindings) -> None:
    """Every number a user binds fits what ONNX (int64) and any real model can hold."""
    given = [(f"--batch {b.batch}", b.batch)] if b.batch is not None else []
    given += [(f"--dim {k}={v}", v) for k, v in b.dims.items()]
    given += [(f"--shape {k}={'x'.join(map(str, s))}", d) for k, s in b.shapes.items() for d in s]
    for flag, v in given:
        if not isinstance(v, int) or isinstance(v, bool):
            raise HwUtilError(f"{flag[:80]}: {v!r} is not a whole number")
        if v > MAX_DIM:
            raise HwUtilError(f"{flag[:80]}: {v} is more than {MAX_DIM:,}, past any batch, sequence or "
                              "image size a model takes")
        if v < 0:
            raise HwUtilError(f"{flag[:80]}: must not be negative")


def _fmt_dims(dims, unknown: str = "?") -> str:
    return "x".join(str(d) if d is not None else unknown for d in dims) or "scalar"


def apply_bindings(model: onnx.ModelProto, shapes: dict[str, Shape], values: dict[str, int]) -> None:
    """Write the bound shapes into the (in-memory) model, and bound symbols wherever they appear."""
    for vi in model.graph.input:
        if vi.name in shapes:
            tt = vi.type.tensor_type
            tt.shape.Clear()
            tt.shape.SetInParent()
            for d in shapes[vi.name]:
                tt.shape.dim.add().dim_value = d
    for vi in list(model.graph.output) + list(model.graph.value_info):
        t = vi.type
        if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
            continue
        for d in t.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param in values:
                d.dim_value = values[d.dim_param]


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
    dims = _dims_of(vi)
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
    try:
        inferred = _infer_once(model)
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
            again = _onnx_infer(hinted)
            if layer is _fold_shape_subgraphs:
                again = _restore_nodes(again, model)  # folding is for shapes: keep every original node
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


def _onnx_infer(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX inference that never fails: where it raises, the model comes back as it was."""
    try:
        return _infer_once(model)
    except Exception:  # onnx raises a zoo of types here
        return model


def _infer_once(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX inference with data propagation (it reads shape computations), unless a generator of constants
    would make it build more values than any shape computation has."""
    return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False,
                                             data_prop=not _big_generator(model))


def _big_generator(model: onnx.ModelProto) -> str | None:
    """The first node, anywhere in the model, whose inputs are all constants and whose output has more than
    MAX_PROPAGATED_ELEMENTS elements (Range(0, 2^62, 1) is 200 bytes on disk): onnx's data propagation
    would materialize it. None if there is none."""
    stack = [model.graph]
    while stack:
        g = stack.pop()
        consts: dict[str, np.ndarray] = {}
        for init in g.initializer:
            if init.raw_data or _has_typed_data(init):
                with contextlib.suppress(Exception):
                    consts[init.name] = numpy_helper.to_array(init)
        for node in g.node:
            if node.op_type == "Constant" and node.output:
                t = next((a.t for a in node.attribute if a.name == "value"), None)
                if t is not None and (t.raw_data or _has_typed_data(t)):
                    with contextlib.suppress(Exception):
                        consts[node.output[0]] = numpy_helper.to_array(t)
            elif node.op_type in _GENERATORS and node.input and all(i in consts for i in node.input if i):
                feeds = {i: consts[i] for i in node.input if i}
                if _output_too_big(node, feeds, MAX_PROPAGATED_ELEMENTS):
                    return f"{node.op_type} node {node.name or node.output[0]!r} generates more than " \
                           f"{MAX_PROPAGATED_ELEMENTS:,} elements from constants"
            for a in node.attribute:
                stack.extend([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs))
    return None


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


def _restore_nodes(inferred: onnx.ModelProto, original: onnx.ModelProto) -> onnx.ModelProto:
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
    return _onnx_infer(out)


def _has_typed_data(t: onnx.TensorProto) -> bool:
    return bool(t.float_data or t.int32_data or t.int64_data or t.double_data or t.uint64_data)


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default
