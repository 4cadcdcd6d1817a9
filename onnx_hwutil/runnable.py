"""A copy of a model that onnxruntime can run: every weight present in memory (random where the file holds
none), and the session options our CPU predictions model. Below `validate` and the `ort` fusion preset, which
both build sessions from these."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnx.inliner
from onnx import numpy_helper

from .bindings import Bindings, apply_bindings, bind_inputs
from .errors import HwUtilError
from .rebatch import rebatch
from .shapes import file_shapes

# What a session is asked for: `all` is a default InferenceSession (what users run, and what the `runtime`
# preset mirrors); `extended` stops before the NCHWc layout transformer.
LEVELS = ("all", "extended")


def runnable_model(path: str, rng: np.random.Generator) -> onnx.ModelProto:
    """The model with every weight present in memory: from the file or from external files inside its own
    folder, else random (graph-only files, or external paths that leave the folder). Refused in one line
    when the weights would not fit in this machine's free memory."""
    m = onnx.load(path, load_external_data=False)
    base = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    external = []
    stack = [m.graph]
    while stack:
        g = stack.pop()
        external += [t for t in g.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
        for n in g.node:
            for a in n.attribute:
                stack.extend([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs))
    _check_memory(path, external)
    for t in external:
        loc = dict((e.key, e.value) for e in t.external_data).get("location", "")
        # realpath: a link inside the folder that points out of it is outside
        target = os.path.realpath(os.path.join(base, loc))
        if not os.path.isabs(loc) and target.startswith(base + os.sep) and os.path.isfile(target):
            try:
                onnx.external_data_helper.load_external_data_for_tensor(t, base)
            except Exception as e:  # onnx's checks on the location, a short read: its own zoo of types
                why = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
                raise HwUtilError(f"{path}: weight {t.name!r} cannot be read from {loc!r} ({why})") from None
        else:
            t.CopyFrom(numpy_helper.from_array(_random(t, rng), t.name))
        t.data_location = onnx.TensorProto.DEFAULT
        del t.external_data[:]
    return m


def bound_runnable(path: str, bindings: Bindings, rng: np.random.Generator) -> onnx.ModelProto:
    """`runnable_model` bound as `profile.bind` binds the file: model-local functions inlined as the
    loader inlines them, so that every tensor keeps the name our graph gives it; the inputs' shapes and
    symbols written in; a file that fixes its batch re-batched."""
    m = runnable_model(path, rng)
    if m.functions:
        m = onnx.inliner.inline_local_functions(m)
    b = bind_inputs(m, bindings)
    if b.rebatch:
        rebatch(m, b.rebatched, *b.rebatch, known=file_shapes(m))
    apply_bindings(m, b.shapes, b.values)
    return m


def _random(t: onnx.TensorProto, rng: np.random.Generator) -> np.ndarray:
    dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
    if np.issubdtype(dtype, np.floating):
        return (rng.standard_normal(tuple(t.dims), dtype=np.float32) * 0.02).astype(dtype, copy=False)
    return np.zeros(tuple(t.dims), dtype)


def _available_memory() -> int | None:
    """What the kernel could give us now: MemAvailable (free memory plus reclaimable page cache), else the
    free pages alone."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _check_memory(path: str, tensors) -> None:
    """Each weight is held about three times (our array, the serialized model, onnxruntime's copy): refuse
    before allocating when that exceeds the memory this machine has free."""
    need = 0
    for t in tensors:
        n = 1
        for d in t.dims:
            n *= d
        try:
            need += n * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        except (KeyError, ValueError, TypeError):
            need += n * 8  # a type numpy cannot name: count the widest
    need *= 3
    free = _available_memory()
    if free is None:
        return  # no way to tell on this system: let onnxruntime try
    if need > free:
        raise HwUtilError(f"{path}: running it needs about {need / 2**30:,.1f} GiB for its weights, more "
                          f"than the {free / 2**30:,.1f} GiB free on this machine")


def session_options(ort, threads: int, level: str = "all"):
    """A CPU session as our predictions model it: `threads` intra-op threads, one inter-op, sequential."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if level == "all" else
                                   ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
    so.log_severity_level = 3
    return so
