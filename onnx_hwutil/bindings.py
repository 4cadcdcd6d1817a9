"""Binding what the user said (--shape, --dim, --batch) to a model's inputs: one parser, one resolver.

Several models can share one set of bindings (compare, report, sweep, diff): each takes those that name its
inputs and dims. A file that fixes its batch at 1 is re-batched (see rebatch.py for the constants); an
unbound batch-named leading dim is 1 in every command, and the notes say so.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import onnx

from .errors import HwUtilError, NoBatchDim
from .limits import MAX_DIM

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
        symbols = {d for v in graph_inputs(model.graph) for d in declared_dims(v) or () if isinstance(d, str)}
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
        symbols[m] = {d for v in vis for d in declared_dims(v) or () if isinstance(d, str)}
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


def declared_dims(vi: onnx.ValueInfoProto) -> list[int | str | None] | None:
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
    declared = {v.name: declared_dims(v) for v in inputs}
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
