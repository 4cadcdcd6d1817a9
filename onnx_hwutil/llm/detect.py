"""Is this graph a decoder with a KV cache, and which of its dims are the past, the new tokens and the total?

Read from the dataflow, never from names: a cache tensor is a graph input that is appended to along one axis
and comes back out as a graph output, either through a Concat (plain-op exports: Optimum, torch.onnx) or
through an attention op that takes a past and returns a present (onnxruntime's GroupQueryAttention and
MultiHeadAttention, the ONNX Attention op of opset 23). The user can name the pairs when a graph does it
some other way (`--kv-cache PAST=PRESENT`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import onnx

from ..bindings import declared_dims, graph_inputs
from ..dtypes import FLOATING
from ..errors import HwUtilError

# Attention ops that take a past and return a present: op -> ((past input, present output, seq axis), ...)
_ATTENTION_CACHE = {
    ("com.microsoft", "GroupQueryAttention"): ((3, 1, 2), (4, 2, 2)),
    ("com.microsoft", "MultiHeadAttention"): ((6, 1, 2), (7, 2, 2)),
    ("", "Attention"): ((4, 1, 2), (5, 2, 2)),  # ONNX opset 23
    ("com.microsoft", "Attention"): ((4, 1, 3),),  # one past for K and V: [2, batch, heads, past, head]
}
# Ops a cache tensor may pass through on its way between input, append and output without changing role.
_PASSTHROUGH = {"Identity", "Cast", "CastLike"}
_TOTAL_NAME = re.compile(r"total|\+|all_?seq|kv_?seq", re.IGNORECASE)


@dataclass(frozen=True)
class CacheTensor:
    past: str  # the graph input
    present: str  # the graph output it comes back as
    seq_axis: int  # the axis that grows by the new tokens
    batch_axis: int
    combined: bool = False  # K and V in one tensor (com.microsoft Attention's `past`)


@dataclass(frozen=True)
class Decoder:
    """The KV-cache structure of a decoder graph, and how to bind it for one phase."""

    caches: tuple[CacheTensor, ...]
    batch_dim: str | int | None  # the symbol (or fixed size) of the caches' batch axis
    past_dim: str  # the symbol of the caches' sequence axis
    new_dims: tuple[str, ...]  # symbols that count the new tokens (input_ids' sequence dim)
    total_dims: tuple[str, ...]  # symbols that count past + new (an attention mask's length)
    how: str  # "concat" or the attention op that appends

    @property
    def layers(self) -> int:
        return len(self.caches) if self.caches[0].combined else len(self.caches) // 2

    def dims(self, batch: int, past: int, new: int) -> dict[str, int]:
        d = {self.past_dim: past} | dict.fromkeys(self.new_dims, new)
        d |= dict.fromkeys(self.total_dims, past + new)
        if isinstance(self.batch_dim, str):
            d[self.batch_dim] = batch
        return d

    def describe(self) -> str:
        new = ", ".join(map(repr, self.new_dims)) or "none"
        total = ", ".join(map(repr, self.total_dims)) or "none"
        return (f"{len(self.caches)} cache tensors ({self.layers} layers) appended by {self.how}; past "
                f"length {self.past_dim!r}, new tokens {new}, total {total}")


def find_decoder(model: onnx.ModelProto, named: dict[str, str] | None = None) -> Decoder:
    """The model's KV cache, or one line saying why it has none. `named`: past input -> present output,
    given by the user for a graph that appends to its cache in a way we do not follow."""
    g = model.graph
    inputs = {v.name: v for v in graph_inputs(g)}
    outputs = {o.name for o in g.output}
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    producer: dict[str, onnx.NodeProto] = {}
    for n in g.node:
        for i, t in enumerate(n.input):
            consumers.setdefault(t, []).append((n, i))
        for t in n.output:
            producer[t] = n
    caches = []
    how = set()
    if named:
        for past, present in named.items():
            if past not in inputs:
                raise HwUtilError(f"--kv-cache {past}={present}: the model has no input {past!r}")
            if present not in outputs:
                raise HwUtilError(f"--kv-cache {past}={present}: the model has no output {present!r}")
            dims = declared_dims(inputs[past]) or []
            axis = _grown_axis(dims)
            if axis is None:
                raise HwUtilError(f"--kv-cache {past}=...: no symbolic dim of {past!r} for the past length")
            caches.append(CacheTensor(past, present, axis, 0))
        how.add("the user's --kv-cache")
    else:
        for name, vi in inputs.items():
            if vi.type.tensor_type.elem_type not in FLOATING and vi.type.tensor_type.elem_type != 0:
                continue
            c = _follow(name, consumers, outputs, producer)
            if c is not None:
                caches.append(c[0])
                how.add(c[1])
    if not caches:
        raise HwUtilError("not a decoder with a KV cache: no input is appended to and returned as an output "
                          "(through a Concat or an attention op's past/present); name the pairs with "
                          "--kv-cache PAST=PRESENT if the graph keeps its cache some other way")
    past_dims = {(declared_dims(inputs[c.past]) or [None] * (c.seq_axis + 1))[c.seq_axis] for c in caches}
    if len(past_dims) != 1:
        raise HwUtilError(f"the KV-cache inputs disagree on the past length: {sorted(map(str, past_dims))}")
    [past_dim] = past_dims
    if not isinstance(past_dim, str):
        raise HwUtilError(f"the KV-cache inputs have a fixed length ({past_dim}): a static cache, "
                          "whose attention always spans that length; `llm` needs a past length it can set")
    batch_dims = {(declared_dims(inputs[c.past]) or [None])[c.batch_axis] for c in caches}
    batch_dim = next(iter(batch_dims)) if len(batch_dims) == 1 else None
    new, total = _token_dims(inputs, {c.past for c in caches}, past_dim, batch_dim)
    return Decoder(tuple(caches), batch_dim, past_dim, new, total, " and ".join(sorted(how)))


def _grown_axis(dims: list) -> int | None:
    """A cache's sequence axis when only its declared dims are known: the symbolic one after the batch."""
    sym = [i for i, d in enumerate(dims) if isinstance(d, str) and i > 0]
    return sym[0] if sym else None


def _through(t: str, consumers, kinds: set[str]) -> str:
    """Follow `t` through single-consumer pass-through ops."""
    seen = 0
    while seen < 8:
        cs = consumers.get(t, [])
        if len(cs) != 1 or cs[0][0].op_type not in kinds:
            return t
        t = cs[0][0].output[0]
        seen += 1
    return t


def _reaches_output(t: str, consumers, outputs: set[str]) -> str | None:
    if t in outputs:
        return t
    for n, _ in consumers.get(t, []):
        if n.op_type in _PASSTHROUGH and n.output and n.output[0] in outputs:
            return n.output[0]
    return None


def _follow(name: str, consumers, outputs: set[str], producer) -> tuple[CacheTensor, str] | None:
    t = _through(name, consumers, _PASSTHROUGH)
    for n, i in consumers.get(t, []):
        key = ("" if n.domain in ("", "ai.onnx") else n.domain, n.op_type)
        if n.op_type == "Concat":
            axis = next((a.i for a in n.attribute if a.name == "axis"), None)
            present = _reaches_output(n.output[0], consumers, outputs)
            if axis is None or present is None or i != 0:
                continue  # the past comes first: a cache is appended to, not prepended
            return CacheTensor(name, present, axis, 0), "Concat"
        for past_i, present_i, axis in _ATTENTION_CACHE.get(key, ()):
            if i == past_i and present_i < len(n.output):
                present = _reaches_output(n.output[present_i], consumers, outputs)
                if present is not None:
                    combined = key == ("com.microsoft", "Attention")
                    return (CacheTensor(name, present, axis, 1 if combined else 0, combined),
                            f"{n.op_type} ({n.domain or 'ai.onnx'})")
    return None


def _token_dims(inputs: dict, caches: set[str], past: str, batch) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The symbols that count new tokens and those that count past + new, from the other inputs' dims: the
    sequence dim of a token input (input_ids, position_ids, inputs_embeds) counts new tokens; that of a mask
    counts the total, as does any symbol whose name says so (`past_sequence_length + 1`, `total_length`)."""
    new: dict[str, None] = {}
    total: dict[str, None] = {}
    for name, vi in inputs.items():
        if name in caches:
            continue
        dims = declared_dims(vi) or []
        for i, d in enumerate(dims):
            if not isinstance(d, str) or d in (past, batch) or i == 0:
                continue
            if _TOTAL_NAME.search(d) or (i == len(dims) - 1 and "mask" in name.lower() and len(dims) == 2):
                total[d] = None
            elif i == 1:
                new[d] = None
    clash = set(new) & set(total)
    if clash:
        raise HwUtilError(f"dim {sorted(clash)[0]!r} counts both new tokens and the total length; bind "
                          "it with --dim")
    return tuple(new), tuple(total)
