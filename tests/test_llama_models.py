"""The Llama decoders of scripts/build_llama.py: tiny versions with real weights run in onnxruntime (a decode
step fed the prefill's KV cache gives the logits of a full recompute), the int4 layout is the one
onnxruntime's quantizer makes, and the bundled graph-only files carry the 1B config."""

import dataclasses
import importlib.util
import math
import pathlib
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "build_llama.py"
ATOL = 1e-4


def _load():
    spec = importlib.util.spec_from_file_location("build_llama", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


bl = _load()
CFG = bl.TINY


@pytest.fixture(scope="module")
def weights():
    return bl.random_weights(CFG, seed=0)


def _session(model):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _run(sess, ids, mask, past):
    """One call; position_ids (plain model only) as transformers makes them: left padding starts at 0."""
    feeds = {"input_ids": ids, "attention_mask": mask}
    if "position_ids" in {i.name for i in sess.get_inputs()}:
        pos = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
        feeds["position_ids"] = np.ascontiguousarray(pos[:, -ids.shape[1]:])
    for i, (k, v) in enumerate(past):
        feeds[f"past_key_values.{i}.key"], feeds[f"past_key_values.{i}.value"] = k, v
    out = sess.run(None, feeds)
    return out[0], list(zip(out[1::2], out[2::2], strict=True))


def _prefill_decode_full(sess, mask, ids=None):
    """Logits and cache of prefill(all but the last token), then decode(last token) on that cache, and of the
    whole sequence at once."""
    batch, prompt = mask.shape[0], mask.shape[1] - 1
    ids = np.random.default_rng(1).integers(0, CFG.vocab, mask.shape) if ids is None else ids
    empty = np.zeros((batch, CFG.kv_heads, 0, CFG.head_dim), np.float32)
    nothing = [(empty, empty)] * CFG.layers
    prefill, cache = _run(sess, ids[:, :prompt], mask[:, :prompt], nothing)
    decode, present = _run(sess, ids[:, prompt:], mask, cache)
    full, full_present = _run(sess, ids, mask, nothing)
    return prefill, decode, present, full, full_present


def _check_cache_equals_recompute(sess, mask, atol):
    prefill, decode, present, full, full_present = _prefill_decode_full(sess, mask)
    assert decode.shape == (mask.shape[0], 1, CFG.vocab)
    assert np.abs(full).max() > 1  # a real signal, not zeros agreeing with zeros
    valid = mask[:, :-1].astype(bool)  # padded query rows attend to nothing: their logits are noise
    np.testing.assert_allclose(prefill[valid], full[:, :-1][valid], atol=atol, rtol=0)
    np.testing.assert_allclose(decode[:, 0], full[:, -1], atol=atol, rtol=0)
    keys = mask.astype(bool)  # past layer 0, the cache at padded positions holds that noise too
    for (k, v), (fk, fv) in zip(present, full_present, strict=True):
        assert k.shape == (mask.shape[0], CFG.kv_heads, mask.shape[1], CFG.head_dim)
        for b in range(mask.shape[0]):
            np.testing.assert_allclose(k[b][:, keys[b]], fk[b][:, keys[b]], atol=atol, rtol=0)
            np.testing.assert_allclose(v[b][:, keys[b]], fv[b][:, keys[b]], atol=atol, rtol=0)
    return full


def test_plain_kv_cache_matches_full_recompute(weights):
    mask = np.ones((2, 6), np.int64)
    mask[1, :2] = 0  # left padding on row 1: the mask must hide those keys in prefill and decode alike
    sess = _session(bl.build_plain(CFG, weights))
    _check_cache_equals_recompute(sess, mask, ATOL)
    # The padded row's tokens alone, unpadded, give the same logits: the padding is really masked out.
    ids = np.random.default_rng(1).integers(0, CFG.vocab, mask.shape)
    padded = _prefill_decode_full(sess, mask, ids)
    alone = _prefill_decode_full(sess, mask[1:, 2:], ids[1:, 2:])
    np.testing.assert_allclose(padded[1][1], alone[1][0], atol=ATOL, rtol=0)
    np.testing.assert_allclose(padded[3][1, 2:], alone[3][0], atol=ATOL, rtol=0)


def test_int4_kv_cache_matches_full_recompute(weights):
    sess = _session(bl.build_genai_int4(CFG, weights))
    _check_cache_equals_recompute(sess, np.ones((2, 6), np.int64), ATOL)


def test_genai_graph_computes_what_the_plain_one_does(weights):
    """Unquantized, the genai graph (GroupQueryAttention with its own rotary from half-width caches and
    seqlens_k) gives the plain graph's logits: both are the same Llama."""
    mask = np.ones((2, 6), np.int64)
    plain = _prefill_decode_full(_session(bl.build_plain(CFG, weights)), mask)
    genai = _prefill_decode_full(_session(bl.build_genai_int4(CFG, weights, quantize=False)), mask)
    for a, b in zip(plain[:2] + plain[3:4], genai[:2] + genai[3:4], strict=True):
        np.testing.assert_allclose(a, b, atol=ATOL, rtol=0)


def _dequantize(packed, scales, k):
    q = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(packed.shape[0], -1).astype(np.float32)
    return ((q - 8).reshape(scales.shape[0], scales.shape[1], -1) * scales[..., None]).reshape(-1, k).T


def test_matmulnbits_reads_our_packing(weights):
    """With weights int4 can hold exactly (quantized then dequantized here) and fp32 activations
    (accuracy_level 0), the int4 model gives the plain fp32 model's logits: onnxruntime's MatMulNBits
    unpacks our bytes and scales into the intended [K, N] weights."""
    deq = dict(weights)
    for name, (k, _) in bl.matmul_shapes(CFG).items():
        deq[name] = _dequantize(*bl.quantize_int4(weights[name], CFG.block_size), k)
        assert np.abs(deq[name] - weights[name]).max() > 0  # the quantization did round
    mask = np.ones((2, 6), np.int64)
    ref = _prefill_decode_full(_session(bl.build_plain(CFG, deq)), mask)
    fp32_activations = dataclasses.replace(CFG, accuracy_level=0)
    got = _prefill_decode_full(_session(bl.build_genai_int4(fp32_activations, deq)), mask)
    for a, b in zip(ref[:2] + ref[3:4], got[:2] + got[3:4], strict=True):
        np.testing.assert_allclose(b, a, atol=ATOL, rtol=0)


def test_int4_layout_is_onnxruntimes_quantizer(weights):
    """genai quantizes its fp32 graph with onnxruntime's MatMulNBitsQuantizer (block 32, symmetric); doing
    that to our unquantized graph gives our int4 graph: same attributes, dims, dtypes and bytes."""
    pytest.importorskip("onnx_ir")  # onnxruntime.quantization imports it
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    unquantized = bl.build_genai_int4(CFG, weights, quantize=False)
    quantizer = MatMulNBitsQuantizer(unquantized, block_size=CFG.block_size, is_symmetric=True,
                                     accuracy_level=CFG.accuracy_level)
    quantizer.process()
    theirs, ours = quantizer.model.model, bl.build_genai_int4(CFG, weights)

    def nbits(model):
        inits = {t.name: t for t in model.graph.initializer}
        return [(list(n.input), sorted((a.name, onnx.helper.get_attribute_value(a)) for a in n.attribute),
                 [(inits[x].data_type, list(inits[x].dims), onnx.numpy_helper.to_array(inits[x]).tobytes())
                  for x in n.input[1:]])
                for n in model.graph.node if n.op_type == "MatMulNBits"]

    mine = nbits(ours)
    assert len(mine) == 7 * CFG.layers + 1
    assert nbits(theirs) == mine
    ids = {"input_ids": np.array([[3, 1, 4]]), "attention_mask": np.ones((1, 3), np.int64)}
    empty = np.zeros((1, CFG.kv_heads, 0, CFG.head_dim), np.float32)
    ids.update({f"past_key_values.{i}.{t}": empty for i in range(CFG.layers) for t in ("key", "value")})
    logits = [_session(m).run(["logits"], ids)[0] for m in (theirs, ours)]
    np.testing.assert_array_equal(*logits)


# -- the bundled graph-only files ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["llama_1b_kv", "llama_1b_int4"])
def test_bundled_file_is_graph_only_and_current(name):
    path = ROOT / "models" / f"{name}.onnx"
    assert path.stat().st_size < 1_000_000
    assert path.read_bytes() == bl.BUILDERS[name](bl.LLAMA_1B).SerializeToString()  # re-run the script if not
    m = onnx.load(str(path), load_external_data=False)
    for t in m.graph.initializer:
        external = t.data_location == onnx.TensorProto.EXTERNAL
        assert external == (len(t.raw_data) == 0 and not t.int64_data and not t.float_data), t.name
        if external:
            assert {e.key: e.value for e in t.external_data}["location"] == f"{name}.onnx.data"
        else:
            assert math.prod(t.dims) * 8 <= 1024, t.name
    ins = [i.name for i in m.graph.input]
    outs = [o.name for o in m.graph.output]
    kv = [f"past_key_values.{i}.{t}" for i in range(16) for t in ("key", "value")]
    assert ins == ["input_ids", "attention_mask", *(["position_ids"] if name == "llama_1b_kv" else []), *kv]
    assert outs == ["logits", *(f"present.{i}.{t}" for i in range(16) for t in ("key", "value"))]
    last = (m.graph.input[-1], m.graph.output[-1])
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in last]
    assert dims == [["batch_size", 8, "past_sequence_length", 64],
                    ["batch_size", 8, "total_sequence_length", 64]]


def test_bundled_plain_model_has_the_1b_parameters():
    m = onnx.load(str(ROOT / "models" / "llama_1b_kv.onnx"), load_external_data=False)
    onnx.checker.check_model(bl.checkable(m), full_check=True)
    inits = {t.name: list(t.dims) for t in m.graph.initializer}
    assert bl.param_count(bl.LLAMA_1B) == 1_235_814_400
    assert sum(math.prod(d) for n, d in inits.items() if n.endswith(".weight")) == 1_235_814_400
    shapes = bl.matmul_shapes(bl.LLAMA_1B)
    matmuls = [n.input[1] for n in m.graph.node if n.op_type == "MatMul" and n.input[1] in inits]
    assert {w: tuple(inits[w]) for w in matmuls} == shapes
    assert sum(k * n for k, n in shapes.values()) == 1_235_746_816  # MACs per token outside attention
    logits = onnx.shape_inference.infer_shapes(m).graph.output[0]
    assert [d.dim_param or d.dim_value for d in logits.type.tensor_type.shape.dim] == [
        "batch_size", "sequence_length", 128256]


def test_bundled_int4_model_has_the_1b_matmuls():
    m = onnx.load(str(ROOT / "models" / "llama_1b_int4.onnx"), load_external_data=False)
    checked = bl.checkable(m)
    for n in checked.graph.node:  # genai's default-domain contrib op: let the checker skip it like the others
        if n.op_type == "SimplifiedLayerNormalization":
            n.domain = "com.microsoft"
    onnx.checker.check_model(checked, full_check=True)
    inits = {t.name: t for t in m.graph.initializer}
    found = {}
    for n in m.graph.node:
        if n.op_type == "MatMulNBits":
            a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
            assert (a["bits"], a["block_size"], a["accuracy_level"]) == (4, 32, 4)
            b, s = inits[n.input[1]], inits[n.input[2]]
            assert b.data_type == onnx.TensorProto.UINT8 and list(b.dims) == [a["N"], a["K"] // 32, 16]
            assert s.data_type == onnx.TensorProto.FLOAT and list(s.dims) == [a["N"], a["K"] // 32]
            found[n.input[1].removesuffix("_Q4")] = (a["K"], a["N"])
    assert found == bl.matmul_shapes(bl.LLAMA_1B)
    gqa = [n for n in m.graph.node if n.op_type == "GroupQueryAttention"]
    assert len(gqa) == 16
    a = {x.name: onnx.helper.get_attribute_value(x) for x in gqa[0].attribute}
    assert (a["num_heads"], a["kv_num_heads"], a["do_rotary"]) == (32, 8, 1)
    assert list(inits[gqa[0].input[7]].dims) == [131072, 32]
