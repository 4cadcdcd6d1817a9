"""Build two graph-only Llama decoders with a KV cache into ``models/``, with onnx.helper alone (no torch).

Both have the dims of Llama-3.2-1B, written out from its ``config.json`` (nothing is downloaded):
``hidden_size`` 2048, ``num_hidden_layers`` 16, ``num_attention_heads`` 32, ``num_key_value_heads`` 8,
``head_dim`` 64, ``intermediate_size`` 8192 (``hidden_act`` "silu": SwiGLU), ``vocab_size`` 128256,
``rms_norm_eps`` 1e-5, ``rope_theta`` 500000 with ``rope_scaling`` {"rope_type": "llama3", "factor": 32,
"low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 8192},
``max_position_embeddings`` 131072 and ``tie_word_embeddings`` true: 1,235,814,400 parameters.

* ``llama_1b_kv.onnx``: what an Optimum / transformers export looks like: plain ONNX ops (opset 17), fp32,
  eager attention written out (RMSNorm as Pow/ReduceMean/Add/Sqrt/Reciprocal/Mul, rotary embedding with
  rotate_half, repeat_kv for GQA, additive causal + padding mask, SwiGLU MLP). Inputs ``input_ids``,
  ``attention_mask``, ``position_ids``, ``past_key_values.{i}.key/value``; outputs ``logits`` and
  ``present.{i}.key/value``. The tied embedding is stored once, as the lm_head's [hidden, vocab] MatMul
  weight; the embedding lookup gathers its columns.
* ``llama_1b_int4.onnx``: what onnxruntime-genai's model builder emits for CPU int4 (opset 21): fp32
  embedding Gather, (Skip)SimplifiedLayerNormalization, MatMulNBits (4 bits, block 32, symmetric, so no
  zero points, accuracy_level 4; the layout of onnxruntime's MatMulNBitsQuantizer, which genai runs) and
  GroupQueryAttention with rotary inside (do_rotary=1, half-width cos/sin caches), fed seqlens_k and
  total_sequence_length derived from ``attention_mask``. Inputs ``input_ids``, ``attention_mask``, past.

Dims are symbolic (``batch_size``, ``sequence_length``, ``past_sequence_length``, ``total_sequence_length``)
so one file serves prefill (past 0) and decode (past N); the analyzer needs all four bound, e.g. decode after
1024 tokens: ``--dim batch_size=1 --dim sequence_length=1 --dim past_sequence_length=1024
--dim total_sequence_length=1025``. Graph-only: every parameter (and the rotary caches)
is a TensorProto with name, dtype and dims and an external-data reference to ``NAME.onnx.data``, a file
that is never written; only shape constants are inline, so each file is a few hundred KB. An analyzer that
loads with ``load_external_data=False`` needs nothing else. The builders take an optional ``weights``
dict (``random_weights``) to hold real values in memory instead: tests/test_llama_models.py runs tiny
versions in onnxruntime that way (KV-cache decode == full recompute). Run from the repo root::

    python scripts/build_llama.py            # writes models/llama_1b_kv.onnx, models/llama_1b_int4.onnx
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F32, I64, I32 = TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32
ALIGN = 4096  # onnx's own external-data writer page-aligns large tensors


@dataclass(frozen=True)
class Config:
    hidden: int = 2048
    layers: int = 16
    heads: int = 32
    kv_heads: int = 8
    head_dim: int = 64
    intermediate: int = 8192
    vocab: int = 128256
    eps: float = 1e-5
    rope_theta: float = 500000.0
    max_pos: int = 131072
    rope_factor: float = 32.0
    rope_low_freq: float = 1.0
    rope_high_freq: float = 4.0
    rope_original_max_pos: int = 8192
    block_size: int = 32  # genai's default int4_block_size
    accuracy_level: int = 4  # genai's CPU int4 setting: int8 activations in MatMulNBits


LLAMA_1B = Config()
TINY = Config(hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16, intermediate=128, vocab=100, max_pos=64,
              rope_original_max_pos=16)


def param_count(cfg: Config) -> int:
    """Parameters of the checkpoint (tied embedding counted once)."""
    q, kv, h = cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim, cfg.hidden
    layer = h * (q + 2 * kv) + q * h + 3 * h * cfg.intermediate + 2 * h
    return cfg.layers * layer + cfg.vocab * h + h


def matmul_shapes(cfg: Config) -> dict[str, tuple[int, int]]:
    """Every MatMul weight as [K, N] (in, out), keyed by its HF parameter name."""
    q, kv, h, f = cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim, cfg.hidden, cfg.intermediate
    out = {}
    for i in range(cfg.layers):
        p = f"model.layers.{i}."
        out.update({p + "self_attn.q_proj.weight": (h, q), p + "self_attn.k_proj.weight": (h, kv),
                    p + "self_attn.v_proj.weight": (h, kv), p + "self_attn.o_proj.weight": (q, h),
                    p + "mlp.gate_proj.weight": (h, f), p + "mlp.up_proj.weight": (h, f),
                    p + "mlp.down_proj.weight": (f, h)})
    out["lm_head.weight"] = (h, cfg.vocab)
    return out


def random_weights(cfg: Config, seed: int = 0) -> dict[str, np.ndarray]:
    """Random fp32 weights scaled so activations stay O(1): outputs are then worth comparing."""
    rng = np.random.default_rng(seed)
    w = {n: (rng.standard_normal(s) / math.sqrt(s[0])).astype(np.float32)
         for n, s in matmul_shapes(cfg).items()}
    w["lm_head.weight"] *= math.sqrt(cfg.hidden)  # it is also the embedding table: unit-scale rows
    norms = [f"model.layers.{i}.{n}_layernorm.weight"
             for i in range(cfg.layers) for n in ("input", "post_attention")]
    for n in [*norms, "model.norm.weight"]:
        w[n] = (1 + 0.1 * rng.standard_normal(cfg.hidden)).astype(np.float32)
    return w


def rope_angles(cfg: Config) -> np.ndarray:
    """[max_pos, head_dim/2] angles with HF's llama3 rope scaling of the inverse frequencies."""
    inv = 1.0 / cfg.rope_theta ** (np.arange(0, cfg.head_dim, 2, dtype=np.float64) / cfg.head_dim)
    wavelen = 2 * math.pi / inv
    old = cfg.rope_original_max_pos
    low, high = old / cfg.rope_low_freq, old / cfg.rope_high_freq
    scaled = np.where(wavelen > low, inv / cfg.rope_factor, inv)
    smooth = (old / wavelen - cfg.rope_low_freq) / (cfg.rope_high_freq - cfg.rope_low_freq)
    medium = (wavelen >= high) & (wavelen <= low)
    scaled = np.where(medium, (1 - smooth) * scaled / cfg.rope_factor + smooth * scaled, scaled)
    return np.outer(np.arange(cfg.max_pos, dtype=np.float64), scaled)


def quantize_int4(w: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric blockwise int4 of a [K, N] weight as MatMulNBits wants it: packed uint8 [N, K/block, block/2]
    (low nibble first), scales fp32 [N, K/block]. onnxruntime's quantizer's recipe (scale = the signed
    absmax / -8, zero point 8, round to nearest): tests check the bytes match it."""
    k, n = w.shape
    blocks = w.T.reshape(n, k // block, block)
    absmax = np.take_along_axis(blocks, np.abs(blocks).argmax(axis=2)[..., None], 2)[..., 0]
    scales = (absmax / np.float32(-8)).astype(np.float32)
    recip = np.divide(np.float32(1), scales, out=np.zeros_like(scales), where=scales != 0)
    q = np.clip(np.rint(blocks * recip[..., None]) + 8, 0, 15).astype(np.uint8)
    return (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8), scales


class _Graph:
    """Nodes and initializers; parameters are in-memory arrays or references to a file never written."""

    def __init__(self, weights: dict[str, np.ndarray] | None, data_file: str):
        self.weights, self.data_file, self.offset = weights, data_file, 0
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self.scope, self.count = "/model", 0

    def op(self, op_type: str, inputs: list[str], outputs: int | list[str] = 1, domain: str = "", **attrs):
        self.count += 1
        name = f"{self.scope}/{op_type}_{self.count}"
        outs = [f"{name}/output_{k}" for k in range(outputs)] if isinstance(outputs, int) else outputs
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, domain=domain or None, **attrs))
        return outs[0] if len(outs) == 1 else outs

    def const(self, value, dtype=np.int64) -> str:
        self.count += 1
        name = f"/model/constants/c_{self.count}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def param(self, name: str, shape, dtype=F32, value: Callable[[], np.ndarray] | None = None) -> str:
        if self.weights is not None:
            array = value() if value is not None else self.weights[name]
            np_dtype = helper.tensor_dtype_to_np_dtype(dtype)
            self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np_dtype), name))
            return name
        t = TensorProto(name=name, data_type=dtype, dims=list(shape), data_location=TensorProto.EXTERNAL)
        length = math.prod(shape) * helper.tensor_dtype_to_np_dtype(dtype).itemsize
        for key, val in (("location", self.data_file), ("offset", self.offset), ("length", length)):
            t.external_data.add(key=key, value=str(val))
        self.offset += -(-length // ALIGN) * ALIGN
        self.inits.append(t)
        return name

    def model(self, name, inputs, outputs, opsets: dict[str, int]) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
                              producer_name="onnx-hwutil scripts/build_llama.py")
        m.ir_version = 10  # opset 21's IR; onnx would stamp its own (14), which older onnxruntimes refuse
        return m


def _io(cfg: Config, position_ids: bool):
    kv = ["batch_size", cfg.kv_heads, "past_sequence_length", cfg.head_dim]
    present = ["batch_size", cfg.kv_heads, "total_sequence_length", cfg.head_dim]
    vi = helper.make_tensor_value_info
    ins = [vi("input_ids", I64, ["batch_size", "sequence_length"]),
           vi("attention_mask", I64, ["batch_size", "total_sequence_length"])]
    ins += [vi("position_ids", I64, ["batch_size", "sequence_length"])] if position_ids else []
    outs = [vi("logits", F32, ["batch_size", "sequence_length", cfg.vocab])]
    for i in range(cfg.layers):
        ins += [vi(f"past_key_values.{i}.{t}", F32, kv) for t in ("key", "value")]
        outs += [vi(f"present.{i}.{t}", F32, present) for t in ("key", "value")]
    return ins, outs


# -- Optimum / transformers-export style --------------------------------------------------------------


def _rms_norm(g: _Graph, x: str, weight: str, cfg: Config) -> str:
    var = g.op("ReduceMean", [g.op("Pow", [x, g.const(2.0, np.float32)])], axes=[-1], keepdims=1)
    inv = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [var, g.const(cfg.eps, np.float32)])])])
    return g.op("Mul", [g.param(weight, [cfg.hidden]), g.op("Mul", [x, inv])])


def _heads(g: _Graph, x: str, n: int, cfg: Config) -> str:
    return g.op("Transpose", [g.op("Reshape", [x, g.const([0, 0, n, cfg.head_dim])])], perm=[0, 2, 1, 3])


def _rotary(g: _Graph, x: str, cos: str, sin: str, cfg: Config) -> str:
    half = cfg.head_dim // 2
    x1 = g.op("Slice", [x, g.const([0]), g.const([half]), g.const([3])])
    x2 = g.op("Slice", [x, g.const([half]), g.const([cfg.head_dim]), g.const([3])])
    rotated = g.op("Concat", [g.op("Neg", [x2]), x1], axis=-1)
    return g.op("Add", [g.op("Mul", [x, cos]), g.op("Mul", [rotated, sin])])


def _repeat_kv(g: _Graph, x: str, cfg: Config) -> str:
    # [B, kv, T, D] -> [B, kv, rep, T, D] -> [B, heads, T, D]; Expand broadcasts, so constant shapes do.
    rep = cfg.heads // cfg.kv_heads
    x = g.op("Expand", [g.op("Unsqueeze", [x, g.const([2])]), g.const([1, 1, rep, 1, 1])])
    return g.op("Reshape", [x, g.const([0, cfg.heads, -1, cfg.head_dim])])


def _causal_mask(g: _Graph) -> str:
    """Additive [B, 1, S, T] mask: query i (at absolute position past + i) sees keys 0..past+i not padded."""
    total = g.op("Gather", [g.op("Shape", ["attention_mask"]), g.const(1)])
    seq = g.op("Gather", [g.op("Shape", ["input_ids"]), g.const(1)])
    one = g.const(1)
    q_pos = g.op("Range", [g.op("Sub", [total, seq]), total, one])
    k_pos = g.op("Range", [g.const(0), total, one])
    causal = g.op("LessOrEqual", [g.op("Unsqueeze", [k_pos, g.const([0])]),
                                  g.op("Unsqueeze", [q_pos, g.const([1])])])
    keep = g.op("Cast", [g.op("Unsqueeze", ["attention_mask", g.const([1, 2])])], to=TensorProto.BOOL)
    allowed = g.op("And", [causal, keep])
    return g.op("Where", [allowed, g.const(0.0, np.float32), g.const(np.finfo(np.float32).min, np.float32)])


def build_plain(cfg: Config = LLAMA_1B, weights: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    g = _Graph(weights, "llama_1b_kv.onnx.data")
    q_dim = cfg.heads * cfg.head_dim
    table = g.param("lm_head.weight", [cfg.hidden, cfg.vocab])
    # Tied embedding: gather columns of the lm_head weight ([H, B, S]), so it is stored and counted once.
    x = g.op("Transpose", [g.op("Gather", [table, "input_ids"], axis=1)], perm=[1, 2, 0])
    angles = np.concatenate([rope_angles(cfg)] * 2, axis=1) if weights is not None else None
    rope = []
    for fn in (np.cos, np.sin):
        cache = g.param(f"{fn.__name__}_cached", [cfg.max_pos, cfg.head_dim], value=lambda fn=fn: fn(angles))
        rope.append(g.op("Unsqueeze", [g.op("Gather", [cache, "position_ids"]), g.const([1])]))
    cos, sin = rope
    mask = _causal_mask(g)
    for i in range(cfg.layers):
        g.scope, p = f"/model/layers.{i}", f"model.layers.{i}."
        h = _rms_norm(g, x, p + "input_layernorm.weight", cfg)
        proj = {}
        for t, n in (("q", cfg.heads), ("k", cfg.kv_heads), ("v", cfg.kv_heads)):
            w = g.param(p + f"self_attn.{t}_proj.weight", [cfg.hidden, n * cfg.head_dim])
            proj[t] = _heads(g, g.op("MatMul", [h, w]), n, cfg)
        q, k = (_rotary(g, proj[t], cos, sin, cfg) for t in ("q", "k"))
        key = g.op("Concat", [f"past_key_values.{i}.key", k], [f"present.{i}.key"], axis=2)
        value = g.op("Concat", [f"past_key_values.{i}.value", proj["v"]], [f"present.{i}.value"], axis=2)
        k_t = g.op("Transpose", [_repeat_kv(g, key, cfg)], perm=[0, 1, 3, 2])
        scores = g.op("Mul", [g.op("MatMul", [q, k_t]), g.const(1 / math.sqrt(cfg.head_dim), np.float32)])
        probs = g.op("Softmax", [g.op("Add", [scores, mask])], axis=-1)
        attn = g.op("Transpose", [g.op("MatMul", [probs, _repeat_kv(g, value, cfg)])], perm=[0, 2, 1, 3])
        attn = g.op("Reshape", [attn, g.const([0, 0, q_dim])])
        o_proj = g.param(p + "self_attn.o_proj.weight", [q_dim, cfg.hidden])
        x = g.op("Add", [x, g.op("MatMul", [attn, o_proj])])
        h = _rms_norm(g, x, p + "post_attention_layernorm.weight", cfg)
        gate = g.op("MatMul", [h, g.param(p + "mlp.gate_proj.weight", [cfg.hidden, cfg.intermediate])])
        up = g.op("MatMul", [h, g.param(p + "mlp.up_proj.weight", [cfg.hidden, cfg.intermediate])])
        act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up])
        down = g.param(p + "mlp.down_proj.weight", [cfg.intermediate, cfg.hidden])
        x = g.op("Add", [x, g.op("MatMul", [act, down])])
    g.scope = "/model"
    g.op("MatMul", [_rms_norm(g, x, "model.norm.weight", cfg), table], ["logits"])
    ins, outs = _io(cfg, position_ids=True)
    return g.model("llama_1b_kv", ins, outs, {"": 17})


# -- onnxruntime-genai style, int4 ----------------------------------------------------------------------


def _matmul_nbits(g: _Graph, x: str, name: str, cfg: Config, quantize: bool, out: list[str] | int = 1) -> str:
    k, n = matmul_shapes(cfg)[name]
    if not quantize:  # the fp32 graph genai hands to MatMulNBitsQuantizer (tests quantize it and compare)
        return g.op("MatMul", [x, g.param(name, [k, n])], out)
    blocks = k // cfg.block_size

    def part(i):
        return lambda: quantize_int4(g.weights[name], cfg.block_size)[i]

    packed = g.param(name + "_Q4", [n, blocks, cfg.block_size // 2], TensorProto.UINT8, part(0))
    scales = g.param(name + "_scales", [n, blocks], F32, part(1))
    return g.op("MatMulNBits", [x, packed, scales], out, domain="com.microsoft", K=k, N=n, bits=4,
                block_size=cfg.block_size, accuracy_level=cfg.accuracy_level)


def _skip_norm(g: _Graph, x: str, skip: str, weight: str, cfg: Config, last: bool = False):
    """SkipSimplifiedLayerNormalization: (norm(x + skip), x + skip), the sum being the next residual."""
    outs = [f"{g.scope}/{weight}/output_0"] + ([] if last else ["", "", f"{g.scope}/{weight}/output_3"])
    res = g.op("SkipSimplifiedLayerNormalization", [x, skip, g.param(weight, [cfg.hidden])], outs,
               domain="com.microsoft", epsilon=cfg.eps)
    return (res, None) if last else (res[0], res[3])


def build_genai_int4(cfg: Config = LLAMA_1B, weights: dict[str, np.ndarray] | None = None,
                     quantize: bool = True) -> onnx.ModelProto:
    g = _Graph(weights, "llama_1b_int4.onnx.data")
    # genai stores the tied table twice: fp32 for the Gather, int4 for the lm_head.
    embed = g.param("model.embed_tokens.weight", [cfg.vocab, cfg.hidden],
                    value=lambda: weights["lm_head.weight"].T)
    x = g.op("Gather", [embed, "input_ids"])
    # genai's mask reformatting: GQA wants per-row (valid length - 1) and the total length as int32.
    g.scope = "/model/attn_mask_reformat"
    row_sum = g.op("ReduceSum", ["attention_mask", g.const([1])], keepdims=0)
    seqlens_k = g.op("Cast", [g.op("Sub", [row_sum, g.const(1)])], to=I32)
    total = g.op("Cast", [g.op("Gather", [g.op("Shape", ["attention_mask"]), g.const(1)])], to=I32)
    half = [cfg.max_pos, cfg.head_dim // 2]
    angles = rope_angles(cfg) if weights is not None else None
    cos, sin = (g.param(f"{fn.__name__}_cache", half, value=lambda fn=fn: fn(angles))
                for fn in (np.cos, np.sin))
    g.scope = "/model/layers.0"
    # genai's first norm has no residual to add; every later one is fused with the residual Add.
    norm0 = g.param("model.layers.0.input_layernorm.weight", [cfg.hidden])
    h = g.op("SimplifiedLayerNormalization", [x, norm0], axis=-1, epsilon=cfg.eps, stash_type=1)
    residual = x
    for i in range(cfg.layers):
        g.scope, p = f"/model/layers.{i}", f"model.layers.{i}."
        q, k, v = (_matmul_nbits(g, h, p + f"self_attn.{t}_proj.weight", cfg, quantize) for t in "qkv")
        past = [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
        outs = [f"{g.scope}/attn/GroupQueryAttention/output_0", f"present.{i}.key", f"present.{i}.value"]
        attn = g.op("GroupQueryAttention", [q, k, v, *past, seqlens_k, total, cos, sin], outs,
                    domain="com.microsoft", num_heads=cfg.heads, kv_num_heads=cfg.kv_heads,
                    scale=1 / math.sqrt(cfg.head_dim), do_rotary=1, rotary_interleaved=0,
                    local_window_size=-1)[0]
        o = _matmul_nbits(g, attn, p + "self_attn.o_proj.weight", cfg, quantize)
        h, residual = _skip_norm(g, o, residual, p + "post_attention_layernorm.weight", cfg)
        gate = _matmul_nbits(g, h, p + "mlp.gate_proj.weight", cfg, quantize)
        up = _matmul_nbits(g, h, p + "mlp.up_proj.weight", cfg, quantize)
        act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up])
        down = _matmul_nbits(g, act, p + "mlp.down_proj.weight", cfg, quantize)
        last = i == cfg.layers - 1
        norm = "model.norm.weight" if last else f"model.layers.{i + 1}.input_layernorm.weight"
        h, residual = _skip_norm(g, down, residual, norm, cfg, last=last)
    g.scope = "/model"
    _matmul_nbits(g, h, "lm_head.weight", cfg, quantize, ["logits"])
    ins, outs = _io(cfg, position_ids=False)
    return g.model("llama_1b_int4", ins, outs, {"": 21, "com.microsoft": 1})


BUILDERS = {"llama_1b_kv": build_plain, "llama_1b_int4": build_genai_int4}


def checkable(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy onnx.checker can check: it insists on opening external-data files, so each external
    initializer becomes a graph input of the same dtype and dims (all it has); the rest is checked as is."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    external = [t for t in m.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    m.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, t.dims) for t in external)
    kept = [t for t in m.graph.initializer if t.data_location != TensorProto.EXTERNAL]
    del m.graph.initializer[:]
    m.graph.initializer.extend(kept)
    return m


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models"), help="output directory (default: models)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, build in BUILDERS.items():
        model = build(LLAMA_1B)
        # genai's default-domain SimplifiedLayerNormalization is no ONNX op: the checker refuses the int4
        # file as genai's own (tests check the rest of it with that node moved to com.microsoft).
        if name == "llama_1b_kv":
            onnx.checker.check_model(checkable(model), full_check=True)
        path = args.out / f"{name}.onnx"
        # Serialized as is: onnx.save_model would try to handle the external data we never write.
        path.write_bytes(model.SerializeToString())
        refs = [t for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL]
        data = sum(int({e.key: e.value for e in t.external_data}["length"]) for t in refs)
        print(f"{path}: {path.stat().st_size:,} bytes, {len(model.graph.node)} nodes, "
              f"{len(model.graph.initializer)} initializers ({len(refs)} external, to {data:,} bytes "
              "of data never written)")
    print(f"Llama-3.2-1B parameters: {param_count(LLAMA_1B):,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
