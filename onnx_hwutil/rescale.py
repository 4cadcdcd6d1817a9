"""A bound model at another batch without inferring its shapes again, where the shapes are affine in it.

A batch search (findings' "what batch reaches 50% of the peak") binds one model at a dozen batches, and
shape inference is most of each bind. In nearly every model each dim is `a + b x batch` (the batch itself,
batch x sequence after a flatten, a constant), so two bound batches give every other one. Nothing is taken on
trust: a model is rescaled only after the extrapolation reproduced a third, really inferred batch exactly:
every tensor's shape, every note, and every count of the profile.
"""

from __future__ import annotations

from dataclasses import replace

from .graph import Graph, Tensor
from .limits import MAX_ELEMENTS
from .profile import BoundModel, Profile

# The batch that checks the extrapolation from batches 1 and 2 against a real inference: past both, so a
# dim that is not affine (a ceil(batch / 2), a batch squared) shows.
PROBE_BATCH = 4


def extrapolate(one: BoundModel, two: BoundModel, batch: int) -> BoundModel | None:
    """`one` and `two` bound at batches 1 and 2; the model at `batch`, or None where a tensor's shape is
    not an affine function of the batch we can see (unknown dims, another rank, a negative result). All
    but the shapes (the notes on which inference layers resolved what, above all) are batch 2's: at batch 1
    a dim of 1 can take inference another way (ONNX's own inference resolves fewer of a legacy GPT-2's
    tensors there), and `checked` holds batch 2's notes to the probe's."""
    if one.graph.outer is not None or one.rebatch or two.rebatch:
        return None
    known = {}
    for name, t1 in one.graph.tensors.items():
        t2 = two.graph.tensors.get(name)
        if t2 is None or t1.dtype != t2.dtype:
            return None
        shape = _affine(t1.shape, t2.shape, batch)
        if shape is False:
            return None
        known[name] = (shape, t1.dtype)
    if set(two.graph.tensors) != set(one.graph.tensors) or _nested(one.graph):
        return None
    inputs = {}
    for name, s1 in one.inputs.items():
        s = _affine(s1, two.inputs.get(name), batch)
        if s is False or s is None:
            return None
        inputs[name] = s
    symbols = {}
    for k, v1 in one.symbols.items():
        if k not in two.symbols:
            return None
        v = _affine((v1,), (two.symbols[k],), batch)
        if v is False or v is None:
            return None
        symbols[k] = v[0]
    return replace(two, graph=_with_shapes(two.graph, known), inputs=inputs, symbols=symbols)


# What a top-level Graph holds (graph.py): all of it but `tensors` follows from the proto alone (cached
# properties included), so a graph at another batch shares it. A Graph that holds anything else is built
# afresh: what it is is not known here.
_STRUCTURE = {"proto", "opsets", "outer", "depth", "inputs", "outputs", "producer", "param_roots",
              "constants", "dag", "nodes", "by_name", "index", "consumers", "small_constants",
              "post_dominators", "signature"}


def _with_shapes(graph: Graph, known: dict) -> Graph:
    """Graph(graph.proto, graph.opsets, known=known), where `known` names every tensor of `graph` (as
    extrapolate's does) with the same dtypes: the structure (nodes, producers, DAG, execution order) is
    shared, only the tensors are new. A Constant's tensor keeps the shape its own value gives, as Graph's
    constructor does; a batch is the same for it."""
    attrs = vars(graph)
    if graph.outer is not None or not set(attrs) - {"tensors"} <= _STRUCTURE \
            or set(known) != set(graph.tensors):
        return Graph(graph.proto, graph.opsets, known=known)
    tensors = {}
    for name, t in graph.tensors.items():
        shape, dtype = known[name]
        new = tensors[name] = Tensor(name, shape, dtype, t.const)
        if new.numel > MAX_ELEMENTS:  # the constructor's own refusal, in its words
            return Graph(graph.proto, graph.opsets, known=known)
    out = object.__new__(Graph)
    out.__dict__.update(attrs)
    out.tensors = tensors
    return out


def checked(one: BoundModel, two: BoundModel, probe: BoundModel) -> bool:
    """Does extrapolating from batches 1 and 2 reproduce `probe` (bound at PROBE_BATCH) exactly?"""
    guess = extrapolate(one, two, PROBE_BATCH)
    if guess is None or guess.shape_notes != probe.shape_notes or guess.inputs != probe.inputs:
        return False
    if {n: (t.shape, t.dtype) for n, t in guess.graph.tensors.items()} != \
            {n: (t.shape, t.dtype) for n, t in probe.graph.tensors.items()}:
        return False
    a, b = Profile(guess), Profile(probe)
    return a.totals == b.totals and [nc.cost for nc in a.costs.nodes] == [nc.cost for nc in b.costs.nodes]


def _affine(s1, s2, batch: int):
    """Shape at `batch` from shapes at 1 and 2: None where unknown at both, False where it cannot be told."""
    if s1 is None and s2 is None:
        return None
    if s1 is None or s2 is None or len(s1) != len(s2):
        return False
    out = []
    for d1, d2 in zip(s1, s2, strict=True):
        if d1 is None or d2 is None:
            if d1 != d2:
                return False
            out.append(None)
            continue
        d = d1 + (d2 - d1) * (batch - 1)
        if d < 0:
            return False
        out.append(d)
    return tuple(out)


def _nested(graph: Graph) -> bool:
    """Control flow: a body's shapes live in its own proto, which extrapolation does not touch."""
    return any(n.subgraphs() for n in graph.nodes)
