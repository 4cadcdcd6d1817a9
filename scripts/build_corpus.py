"""Build the validation corpus: graph-only ONNX models of several exporters and eras, split once in halves.

    /work/torchenv/bin/python scripts/build_corpus.py [--out corpus] [--only NAME ...] [--list]

(5 to 6 minutes on 2 cores, 2.9 GB of weights, 10 MB of graphs.)

Needs torch 2.14.1, torchvision 0.29.1, transformers and onnxscript (the dynamo exporter) besides the
project's own onnx and onnxruntime; nothing in onnx_hwutil or its tests imports torch. Every weight is random
(`torch.manual_seed(0)` before each model, numpy's default_rng(0) for the hand-built ones and the calibration
batches); nothing is downloaded.

What the corpus holds (the list is MODELS below; `--list` prints it with each model's half):
- torch.onnx legacy (TorchScript, dynamo=False) exports of torchvision families at opsets 11 to 17: fixed
  batch (no dynamic axes), symbolic batch, dynamic H/W, one without constant folding (BatchNormalization
  nodes left in the graph) and one with initializers listed as graph inputs (the pre-IR-4 style);
- torch.onnx dynamo exports (opset 18) of the same families and of ConvNeXt, Swin, ViT;
- transformers models from random-weight configs, legacy and dynamo: BERT (4 layers, hidden 512: the
  BERT-small shape), DistilBERT (3 layers), RoBERTa (4 layers, hidden 512), GPT-2 and a Llama-architecture
  decoder (4 layers, hidden 512, 8 heads, GQA with 2 KV heads) with and without a KV cache, a T5 encoder
  (4 layers, t5-small widths), the Whisper-tiny encoder over 10 s of audio (1000 mel frames, not 3000).
  Vocabularies are cut to 8192 for GPT-2, Llama and T5 to keep the weights small; BERT-family models keep
  theirs;
- onnxruntime-optimized variants (the graph ORT writes to `optimized_model_filepath` at ORT_ENABLE_BASIC or
  ORT_ENABLE_EXTENDED);
- quantized variants (onnxruntime.quantization: quantize_dynamic; quantize_static in QDQ and QOperator
  formats, calibrated on 4 random batches);
- hand-built graphs in older exporters' styles (onnx.helper, opsets 7 and 9): BatchNorm written as a
  constant Mul and Add after a bias-less Conv, Gemm with transB, Upsample, a LeNet with a constant Reshape.

Symbolic dims other than the batch are bound by the manifest's `dims`, which the corpus scripts pass to the
analyzer and to onnxruntime: encoders run at sequence 128; a decoder with a KV cache at sequence 128 with
past 0 (prefill: `past_sequence=0`, `total_sequence=128`); dynamic H/W at 224x224. An unbound batch is 1.

The split, decided once: a model's half is the parity of the first byte of sha256(name.encode("utf-8")),
even -> "tuning", odd -> "heldout" (`corpus.half_of`, scripts/corpus.py). It is a pure function of the name,
written into the manifest, and never changed: a model never moves between halves (renaming a model makes it
a new model). Fusion rules and calibrations may look at the tuning half only; the held-out half is only
measured. The bundled models in models/ belong to neither half.

Storage, as scripts/export_models.py does it: every initializer of 1 KiB or more is moved to NAME.onnx.data
next to NAME.onnx, so the .onnx holds only the graph, shapes and dtypes, and onnxruntime (the latency and
fusion checks) still finds the weights. The dynamo exporter's per-node Python stack traces (this machine's
paths, this script's line numbers) are dropped, so the bytes depend on the model, not on where it was built.
`manifest.json` records for each model its name, half, family, exporter, opset, bound dims and the sha256 of
the .onnx. The .data files are git-ignored; graph-only files under 1 MB may be committed (this script lists
the larger ones in the folder's .gitignore), so the corpus that was measured stays the corpus even when a
later torch exports differently; the script prints every model whose bytes differ from the previous manifest.

Each model is run once in onnxruntime after it is written (torch exports compared with torch's own output);
a failure to export or run drops that model from this build with its reason printed, never silently.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from corpus import MANIFEST, half_of, sha256_file

SIZE_THRESHOLD = 1024  # initializers at least this big go to the .data file
COMMIT_LIMIT = 1 << 20  # graph-only files above this stay out of git
SEQ = 128
IMAGE = 224


# ---------------------------------------------------------------------------------------------- the models

@dataclass(frozen=True)
class TorchModel:
    """One torch.onnx export. `dynamic` maps an input or output name to {axis: dim name}; `dims` binds the
    non-batch dims for every run."""

    name: str
    family: str
    exporter: str  # "legacy" or "dynamo"
    opset: int
    module: Callable[[], object]
    inputs: Callable[[], tuple]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic: dict[str, dict[int, str]] = field(default_factory=dict)
    dims: dict[str, int] = field(default_factory=dict)
    fold: bool = True
    initializers_as_inputs: bool = False
    note: str = ""
    varargs_from: int | None = None  # forward(a, b, *rest): torch.export wants rest's shapes as one tuple


@dataclass(frozen=True)
class Derived:
    """A model made from another corpus model by onnxruntime: its optimizer or its quantizer."""

    name: str
    base: str
    kind: str  # ort-basic, ort-extended, quant-dynamic, quant-qdq, quant-qoperator
    note: str = ""


@dataclass(frozen=True)
class Hand:
    name: str
    family: str
    opset: int
    build: Callable[[np.random.Generator], onnx.ModelProto]
    dims: dict[str, int] = field(default_factory=dict)
    note: str = ""


def _tv(ctor: str, **kw) -> Callable[[], object]:
    def build():
        import torchvision

        if ctor == "vit_s16":
            # ViT-S/16 (the DeiT-S shape): torchvision's smallest published ViT is B/16, 4x the work
            m = torchvision.models.VisionTransformer(image_size=IMAGE, patch_size=16, num_layers=12,
                                                     num_heads=6, hidden_dim=384, mlp_dim=1536)
        elif ctor == "ssdlite320_mobilenet_v3_large":
            det = torchvision.models.detection
            m = det.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
        else:
            m = getattr(torchvision.models, ctor)(weights=None, **kw)
        if isinstance(m, torchvision.models.VisionTransformer):
            # torchvision zero-initialises the head: every output would be 0, and the check against torch moot
            import torch

            torch.nn.init.normal_(m.heads.head.weight, std=0.02)
        return m

    return build


def _image(side: int = IMAGE, batch: int = 1) -> Callable[[], tuple]:
    def make():
        import torch

        return (torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(1)),)

    return make


def _vision(name, ctor, exporter, opset, *, batch="batch", hw=False, side=IMAGE, fold=True, inits_in=False,
            ctor_kw=None, note="") -> TorchModel:
    dyn: dict[str, dict[int, str]] = {}
    dims: dict[str, int] = {}
    if batch:
        dyn = {"input": {0: "batch"}, "output": {0: "batch"}}
    if hw:
        dyn.setdefault("input", {}).update({2: "height", 3: "width"})
        dims = {"height": side, "width": side}
    # torch.export specializes a dim whose example is 1 (ConvNeXt then refuses a dynamic batch): example 2
    example = _image(side, 2 if batch and exporter == "dynamo" else 1)
    return TorchModel(name, ctor, exporter, opset, _tv(ctor, **(ctor_kw or {})), example, ("input",),
                      ("output",), dyn, dims, fold, inits_in, note)


class _Encoder:
    """A transformers encoder with (input_ids, attention_mask) in and its last hidden state out."""

    def __init__(self, kind: str, attn: str):
        import torch
        import transformers as tf

        cfgs = {
            "bert": lambda: tf.BertModel(tf.BertConfig(hidden_size=512, num_hidden_layers=4,
                                                       num_attention_heads=8, intermediate_size=2048,
                                                       attn_implementation=attn), add_pooling_layer=False),
            "roberta": lambda: tf.RobertaModel(tf.RobertaConfig(hidden_size=512, num_hidden_layers=4,
                                                                num_attention_heads=8, intermediate_size=2048,
                                                                attn_implementation=attn),
                                               add_pooling_layer=False),
            "distilbert": lambda: tf.DistilBertModel(tf.DistilBertConfig(n_layers=3,
                                                                         attn_implementation=attn)),
            "t5": lambda: tf.T5EncoderModel(tf.T5Config(d_model=512, d_ff=2048, d_kv=64, num_layers=4,
                                                        num_heads=8, vocab_size=8192,
                                                        attn_implementation=attn)),
        }

        class Wrap(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask):
                return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

        self.module = Wrap(cfgs[kind]())


class _Decoder:
    """A causal LM (logits out); with `cache`, past keys and values in and the present ones out, one pair per
    layer, as the runtime's generate loops feed them."""

    LAYERS = 4

    def __init__(self, kind: str, cache: bool, attn: str, layers: int = LAYERS):
        import torch
        import transformers as tf
        from transformers.cache_utils import DynamicCache

        if kind == "gpt2":
            cfg = tf.GPT2Config(n_embd=512, n_layer=layers, n_head=8, vocab_size=8192, n_positions=1024,
                                bos_token_id=0, eos_token_id=0, attn_implementation=attn)
            model = tf.GPT2LMHeadModel(cfg)
        else:
            cfg = tf.LlamaConfig(hidden_size=512, intermediate_size=1376, num_hidden_layers=layers,
                                 num_attention_heads=8, num_key_value_heads=2, vocab_size=8192,
                                 max_position_embeddings=2048, attn_implementation=attn)
            model = tf.LlamaForCausalLM(cfg)

        class Wrap(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask, *past):
                if not cache:
                    return self.m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
                kv = DynamicCache(config=self.m.config)
                for i in range(layers):
                    kv.update(past[2 * i], past[2 * i + 1], i)
                out = self.m(input_ids=input_ids, attention_mask=attention_mask, past_key_values=kv,
                             use_cache=True)
                present = []
                for layer in out.past_key_values.layers[:layers]:
                    present += [layer.keys, layer.values]
                return (out.logits, *present)

        self.module = Wrap(model)


def _ids(seq: int = SEQ) -> Callable[[], tuple]:
    def make():
        import torch

        g = torch.Generator().manual_seed(1)
        return torch.randint(0, 1000, (1, seq), generator=g), torch.ones(1, seq, dtype=torch.int64)

    return make


def _encoder(name, kind, exporter, opset, *, fixed=False, note="") -> TorchModel:
    attn = "eager" if exporter == "legacy" else "sdpa"
    dyn = {} if fixed else {n: {0: "batch", 1: "sequence"} for n in ("input_ids", "attention_mask", "output")}
    return TorchModel(name, kind, exporter, opset, lambda: _Encoder(kind, attn).module, _ids(),
                      ("input_ids", "attention_mask"), ("output",), dyn, {} if fixed else {"sequence": SEQ},
                      note=note)


# Export examples: a past of 4 and 16 new tokens, so that no dim is 0 or 1 (the dynamo exporter specializes
# those); runs bind the prefill shape (past 0, sequence 128).
_PAST, _NEW = 4, 16


def _decoder(name, kind, exporter, opset, *, cache: bool, layers: int = _Decoder.LAYERS, fixed: bool = False,
             note="") -> TorchModel:
    """`fixed`: no dynamic axes (batch 1, sequence SEQ as exported; no cache)."""
    attn = "eager" if exporter == "legacy" else "sdpa"
    heads, head_dim = (8, 64) if kind == "gpt2" else (2, 64)
    past_names = tuple(f"past_key_values.{i}.{kv}" for i in range(layers) for kv in ("key", "value"))
    present_names = tuple(f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value"))

    def inputs():
        import torch

        g = torch.Generator().manual_seed(1)
        ids = torch.randint(0, 1000, (1, SEQ if fixed else _NEW), generator=g)
        if not cache:
            return ids, torch.ones(*ids.shape, dtype=torch.int64)
        past = tuple(torch.randn(1, heads, _PAST, head_dim, generator=g) for _ in past_names)
        return (ids, torch.ones(1, _PAST + _NEW, dtype=torch.int64), *past)

    names = ("input_ids", "attention_mask", *(past_names if cache else ()))
    outs = ("logits", *(present_names if cache else ()))
    dyn = {"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}}
    if cache:
        dyn["attention_mask"] = {0: "batch", 1: "total_sequence"}
        dyn.update({n: {0: "batch", 2: "past_sequence"} for n in past_names})
        dyn.update({n: {0: "batch", 2: "total_sequence"} for n in present_names})
        dims = {"sequence": SEQ, "past_sequence": 0, "total_sequence": SEQ}
    else:
        dyn["attention_mask"] = {0: "batch", 1: "sequence"}
        dims = {"sequence": SEQ}
    if fixed:
        dyn, dims = {}, {}
    return TorchModel(name, kind, exporter, opset, lambda: _Decoder(kind, cache, attn, layers).module, inputs,
                      names, outs, dyn, dims, note=note, varargs_from=2 if cache else None)


def _whisper(name, exporter, opset) -> TorchModel:
    frames = 1000

    def module():
        import transformers as tf
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        cfg = tf.WhisperConfig(d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536,
                               num_mel_bins=80, max_source_positions=frames // 2,
                               attn_implementation="eager" if exporter == "legacy" else "sdpa")
        import torch

        class Wrap(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.m = WhisperEncoder(cfg)

            def forward(self, input_features):
                return self.m(input_features).last_hidden_state

        return Wrap()

    def inputs():
        import torch

        return (torch.randn(1, 80, frames, generator=torch.Generator().manual_seed(1)),)

    return TorchModel(name, "whisper_encoder", exporter, opset, module, inputs, ("input_features",),
                      ("output",),
                      {"input_features": {0: "batch"}, "output": {0: "batch"}},
                      note="Whisper-tiny encoder widths, 4 layers, 1000 mel frames (10 s)")


# ----------------------------------------------------------------------------------- hand-built, old styles

def _f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _w(rng, name, *shape, scale=0.1):
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def _model(nodes, inputs, outputs, inits, opset, name):
    m = helper.make_model(helper.make_graph(nodes, name, inputs, outputs, inits),
                          opset_imports=[helper.make_opsetid("", opset)], producer_name="onnx.helper")
    m.ir_version = 3 if opset <= 7 else 4  # what the exporters of that era wrote
    if m.ir_version < 4:  # IR 3 lists every initializer among the graph's inputs too
        listed = {v.name for v in m.graph.input}
        m.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                             for t in inits if t.name not in listed)
    return m


def _hand_bn_muladd(rng: np.random.Generator) -> onnx.ModelProto:
    """A VGG-style CNN whose BatchNorms an old exporter wrote as a per-channel Mul and Add after a Conv
    without bias, then Relu; max pools, global average pool, Flatten and a Gemm with transB=1."""
    nodes, inits = [], []
    x, cin = "input", 3
    for i, (cout, pool) in enumerate([(32, True), (64, True), (64, False), (128, True), (128, False),
                                      (256, True)]):
        inits += [_w(rng, f"conv{i}.w", cout, cin, 3, 3), _w(rng, f"bn{i}.scale", cout, 1, 1, scale=1.0),
                  _w(rng, f"bn{i}.shift", cout, 1, 1)]
        nodes += [helper.make_node("Conv", [x, f"conv{i}.w"], [f"c{i}"], kernel_shape=[3, 3], pads=[1] * 4),
                  helper.make_node("Mul", [f"c{i}", f"bn{i}.scale"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"bn{i}.shift"], [f"a{i}"]),
                  helper.make_node("Relu", [f"a{i}"], [f"r{i}"])]
        x, cin = f"r{i}", cout
        if pool:
            nodes.append(helper.make_node("MaxPool", [x], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2]))
            x = f"p{i}"
    inits += [_w(rng, "fc.w", 1000, cin), _w(rng, "fc.b", 1000)]
    nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"]),
              helper.make_node("Flatten", ["gap"], ["flat"]),
              helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["output"], transB=1)]
    return _model(nodes, [_f32("input", ["N", 3, 224, 224])], [_f32("output", ["N", 1000])], inits, 9,
                  "cnn_bn_as_mul_add")


def _hand_mlp(rng: np.random.Generator) -> onnx.ModelProto:
    """A wide-and-deep style MLP at opset 7: Gemm (transB) + BatchNormalization (opset-7 form) + Relu,
    Dropout, Sigmoid."""
    nodes, inits = [], []
    x, width = "input", 256
    for i, out in enumerate([1024, 1024, 512, 256]):
        inits += [_w(rng, f"fc{i}.w", out, width), _w(rng, f"fc{i}.b", out)]
        inits += [_w(rng, f"bn{i}.{p}", out, scale=1.0) for p in ("scale", "bias", "mean")]
        inits.append(numpy_helper.from_array(np.abs(rng.standard_normal(out)).astype(np.float32) + 0.5,
                                             f"bn{i}.var"))
        nodes += [helper.make_node("Gemm", [x, f"fc{i}.w", f"fc{i}.b"], [f"g{i}"], transB=1),
                  helper.make_node("BatchNormalization", [f"g{i}", *(f"bn{i}.{p}" for p in
                                                                     ("scale", "bias", "mean", "var"))],
                                   [f"n{i}"], epsilon=1e-5),
                  helper.make_node("Relu", [f"n{i}"], [f"r{i}"]),
                  helper.make_node("Dropout", [f"r{i}"], [f"d{i}"], ratio=0.1)]
        x, width = f"d{i}", out
    inits += [_w(rng, "head.w", 1, width), _w(rng, "head.b", 1)]
    nodes += [helper.make_node("Gemm", [x, "head.w", "head.b"], ["logit"], transB=1),
              helper.make_node("Sigmoid", ["logit"], ["output"])]
    return _model(nodes, [_f32("input", ["batch", 256])], [_f32("output", ["batch", 1])], inits, 7,
                  "mlp_gemm_transb")


def _hand_mlp_gemm_relu(rng: np.random.Generator) -> onnx.ModelProto:
    """A classifier MLP at opset 9 as caffe2/early-PyTorch converters wrote it: Gemm with the weight stored
    [in, out] (no transB), Relu, a Softmax head."""
    nodes, inits = [], []
    x, width = "input", 784
    for i, out in enumerate([512, 512, 256]):
        inits += [_w(rng, f"fc{i}.w", width, out), _w(rng, f"fc{i}.b", out)]
        nodes += [helper.make_node("Gemm", [x, f"fc{i}.w", f"fc{i}.b"], [f"g{i}"]),
                  helper.make_node("Relu", [f"g{i}"], [f"r{i}"])]
        x, width = f"r{i}", out
    inits += [_w(rng, "head.w", width, 10), _w(rng, "head.b", 10)]
    nodes += [helper.make_node("Gemm", [x, "head.w", "head.b"], ["logit"]),
              helper.make_node("Softmax", ["logit"], ["output"], axis=1)]
    return _model(nodes, [_f32("input", ["batch", 784])], [_f32("output", ["batch", 10])], inits, 9,
                  "mlp_gemm_relu")


def _hand_mlp_matmul_add(rng: np.random.Generator) -> onnx.ModelProto:
    """A dense network at opset 11 as tf2onnx and keras2onnx write Dense layers: MatMul, then the bias as
    its own Add, then the activation (Relu, Tanh), and a residual Add between equal widths."""
    nodes, inits = [], []
    x, width = "input", 128
    for i, (out, act) in enumerate([(256, "Relu"), (256, "Tanh"), (256, "Relu"), (64, "Relu")]):
        inits += [_w(rng, f"dense{i}/kernel", width, out), _w(rng, f"dense{i}/bias", out)]
        nodes += [helper.make_node("MatMul", [x, f"dense{i}/kernel"], [f"mm{i}"]),
                  helper.make_node("Add", [f"mm{i}", f"dense{i}/bias"], [f"ba{i}"]),
                  helper.make_node(act, [f"ba{i}"], [f"a{i}"])]
        if out == width:
            nodes.append(helper.make_node("Add", [f"a{i}", x], [f"res{i}"]))
            x = f"res{i}"
        else:
            x = f"a{i}"
        width = out
    inits += [_w(rng, "head/kernel", width, 1), _w(rng, "head/bias", 1)]
    nodes += [helper.make_node("MatMul", [x, "head/kernel"], ["head_mm"]),
              helper.make_node("Add", ["head_mm", "head/bias"], ["output"])]
    return _model(nodes, [_f32("input", ["N", 128])], [_f32("output", ["N", 1])], inits, 11,
                  "mlp_matmul_add")


def _hand_unet(rng: np.random.Generator) -> onnx.ModelProto:
    """A small encoder-decoder at opset 9: Conv + BatchNormalization + Relu, MaxPool down, Upsample (scales
    as an input, opset 9) up, Concat skips, a 1x1 Conv and Sigmoid head; 128x128 input."""
    nodes, inits = [], []

    def block(x, cin, cout, tag):
        inits.extend([_w(rng, f"{tag}.w", cout, cin, 3, 3), _w(rng, f"{tag}.b", cout),
                      *(_w(rng, f"{tag}.bn.{p}", cout, scale=1.0) for p in ("scale", "bias", "mean")),
                      numpy_helper.from_array(np.ones(cout, np.float32), f"{tag}.bn.var")])
        nodes.extend([helper.make_node("Conv", [x, f"{tag}.w", f"{tag}.b"], [f"{tag}.c"], kernel_shape=[3, 3],
                                       pads=[1] * 4),
                      helper.make_node("BatchNormalization", [f"{tag}.c", *(f"{tag}.bn.{p}" for p in
                                                                          ("scale", "bias", "mean", "var"))],
                                       [f"{tag}.n"]),
                      helper.make_node("Relu", [f"{tag}.n"], [f"{tag}.r"])])
        return f"{tag}.r"

    inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "up.scales"))
    skips, x, cin = [], "input", 3
    for i, c in enumerate([16, 32, 64]):
        x = block(x, cin, c, f"down{i}")
        skips.append((x, c))
        nodes.append(helper.make_node("MaxPool", [x], [f"pool{i}"], kernel_shape=[2, 2], strides=[2, 2]))
        x, cin = f"pool{i}", c
    x = block(x, cin, 128, "mid")
    cin = 128
    for i, (skip, c) in enumerate(reversed(skips)):
        nodes += [helper.make_node("Upsample", [x, "up.scales"], [f"up{i}"], mode="nearest"),
                  helper.make_node("Concat", [f"up{i}", skip], [f"cat{i}"], axis=1)]
        x = block(f"cat{i}", cin + c, c, f"upb{i}")
        cin = c
    inits += [_w(rng, "head.w", 1, cin, 1, 1), _w(rng, "head.b", 1)]
    nodes += [helper.make_node("Conv", [x, "head.w", "head.b"], ["head"], kernel_shape=[1, 1]),
              helper.make_node("Sigmoid", ["head"], ["output"])]
    return _model(nodes, [_f32("input", ["batch", 3, 128, 128])], [_f32("output", ["batch", 1, 128, 128])],
                  inits, 9, "unet_upsample")


def _hand_lenet(rng: np.random.Generator) -> onnx.ModelProto:
    """LeNet-5 as the first exporters wrote it: opset 7, batch fixed at 1, initializers also listed as graph
    inputs (IR 3), Reshape to a constant shape, Gemm with transB, Softmax."""
    inits = [_w(rng, "c1.w", 6, 1, 5, 5), _w(rng, "c1.b", 6), _w(rng, "c2.w", 16, 6, 5, 5),
             _w(rng, "c2.b", 16),
             _w(rng, "f1.w", 120, 400), _w(rng, "f1.b", 120), _w(rng, "f2.w", 84, 120), _w(rng, "f2.b", 84),
             _w(rng, "f3.w", 10, 84), _w(rng, "f3.b", 10),
             numpy_helper.from_array(np.array([1, 400], np.int64), "flat.shape")]
    nodes = [helper.make_node("Conv", ["input", "c1.w", "c1.b"], ["c1"], kernel_shape=[5, 5], pads=[2] * 4),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "c2.w", "c2.b"], ["c2"], kernel_shape=[5, 5]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Reshape", ["p2", "flat.shape"], ["flat"]),
             helper.make_node("Gemm", ["flat", "f1.w", "f1.b"], ["f1"], transB=1),
             helper.make_node("Relu", ["f1"], ["r3"]),
             helper.make_node("Gemm", ["r3", "f2.w", "f2.b"], ["f2"], transB=1),
             helper.make_node("Relu", ["f2"], ["r4"]),
             helper.make_node("Gemm", ["r4", "f3.w", "f3.b"], ["f3"], transB=1),
             helper.make_node("Softmax", ["f3"], ["output"])]
    return _model(nodes, [_f32("input", [1, 1, 28, 28])], [_f32("output", [1, 10])], inits, 7, "lenet")


def _hand_se_resnet(rng: np.random.Generator) -> onnx.ModelProto:
    """Residual blocks with squeeze-and-excitation at opset 9, written the way Keras converters did: NHWC
    input transposed to NCHW, BatchNorm as Mul+Add after Conv, Clip(0, 6) as the activation, the SE gate as
    ReduceMean + two 1x1 Convs + Sigmoid + Mul; symbolic batch."""
    nodes, inits = [], []

    def conv_bn(x, cin, cout, k, stride, tag, act=True):
        inits.extend([_w(rng, f"{tag}.w", cout, cin, k, k), _w(rng, f"{tag}.s", 1, cout, 1, 1, scale=1.0),
                      _w(rng, f"{tag}.t", 1, cout, 1, 1)])
        nodes.extend([helper.make_node("Conv", [x, f"{tag}.w"], [f"{tag}.c"], kernel_shape=[k, k],
                                       strides=[stride] * 2, pads=[k // 2] * 4),
                      helper.make_node("Mul", [f"{tag}.c", f"{tag}.s"], [f"{tag}.m"]),
                      helper.make_node("Add", [f"{tag}.m", f"{tag}.t"], [f"{tag}.a"])])
        if not act:
            return f"{tag}.a"
        nodes.append(helper.make_node("Clip", [f"{tag}.a"], [f"{tag}.r"], min=0.0, max=6.0))
        return f"{tag}.r"

    nodes.append(helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2]))
    x = conv_bn("nchw", 3, 32, 3, 2, "stem")
    cin = 32
    for i, (c, s) in enumerate([(32, 1), (64, 2), (64, 1), (128, 2), (128, 1)]):
        y = conv_bn(x, cin, c, 3, s, f"b{i}.1")
        y = conv_bn(y, c, c, 3, 1, f"b{i}.2", act=False)
        inits += [_w(rng, f"b{i}.se1.w", c // 4, c, 1, 1), _w(rng, f"b{i}.se1.b", c // 4),
                  _w(rng, f"b{i}.se2.w", c, c // 4, 1, 1), _w(rng, f"b{i}.se2.b", c)]
        nodes += [helper.make_node("ReduceMean", [y], [f"b{i}.sq"], axes=[2, 3], keepdims=1),
                  helper.make_node("Conv", [f"b{i}.sq", f"b{i}.se1.w", f"b{i}.se1.b"], [f"b{i}.e1"],
                                   kernel_shape=[1, 1]),
                  helper.make_node("Relu", [f"b{i}.e1"], [f"b{i}.e1r"]),
                  helper.make_node("Conv", [f"b{i}.e1r", f"b{i}.se2.w", f"b{i}.se2.b"], [f"b{i}.e2"],
                                   kernel_shape=[1, 1]),
                  helper.make_node("Sigmoid", [f"b{i}.e2"], [f"b{i}.gate"]),
                  helper.make_node("Mul", [y, f"b{i}.gate"], [f"b{i}.se"])]
        short = x if (c == cin and s == 1) else conv_bn(x, cin, c, 1, s, f"b{i}.down", act=False)
        nodes += [helper.make_node("Add", [f"b{i}.se", short], [f"b{i}.sum"]),
                  helper.make_node("Clip", [f"b{i}.sum"], [f"b{i}.out"], min=0.0, max=6.0)]
        x, cin = f"b{i}.out", c
    inits += [_w(rng, "fc.w", cin, 100), _w(rng, "fc.b", 100)]
    nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"]),
              helper.make_node("Flatten", ["gap"], ["flat"]),
              helper.make_node("MatMul", ["flat", "fc.w"], ["fc"]),
              helper.make_node("Add", ["fc", "fc.b"], ["output"])]
    return _model(nodes, [_f32("input", ["batch_size", 160, 160, 3])], [_f32("output", ["batch_size", 100])],
                  inits, 9, "se_resnet_keras_style")


# ------------------------------------------------------------------------------------------------ the list
# Names are permanent: each name's half follows from it (corpus.half_of), so a name is never reused for a
# different model and never changed to move a model.

MODELS: list[TorchModel | Derived | Hand] = [
    # torchvision, legacy TorchScript exporter
    _vision("resnet18_legacy_op11_b1", "resnet18", "legacy", 11, batch=None, note="batch fixed at 1"),
    _vision("resnet18_legacy_op13_nofold", "resnet18", "legacy", 13, fold=False,
            note="do_constant_folding=False: BatchNormalization nodes stay"),
    _vision("resnext50_32x4d_legacy_op13", "resnext50_32x4d", "legacy", 13),
    _vision("mobilenet_v2_legacy_op12_dynhw", "mobilenet_v2", "legacy", 12, hw=True, note="dynamic H/W"),
    _vision("mobilenet_v3_small_legacy_op14", "mobilenet_v3_small", "legacy", 14),
    _vision("efficientnet_b0_legacy_op13", "efficientnet_b0", "legacy", 13),
    _vision("regnet_y_400mf_legacy_op15", "regnet_y_400mf", "legacy", 15),
    _vision("densenet121_legacy_op11_b1", "densenet121", "legacy", 11, batch=None, note="batch fixed at 1"),
    _vision("inception_v3_legacy_op16", "inception_v3", "legacy", 16, ctor_kw={"init_weights": True},
            note="224x224 input, not 299"),
    _vision("googlenet_legacy_op12_initinputs", "googlenet", "legacy", 12, inits_in=True,
            ctor_kw={"init_weights": True}, note="keep_initializers_as_inputs=True (IR 3 style)"),
    _vision("shufflenet_v2_x1_0_legacy_op11", "shufflenet_v2_x1_0", "legacy", 11),
    _vision("squeezenet1_1_legacy_op11_dynhw", "squeezenet1_1", "legacy", 11, hw=True, note="dynamic H/W"),
    _vision("convnext_tiny_legacy_op17", "convnext_tiny", "legacy", 17),
    _vision("swin_t_legacy_op17", "swin_t", "legacy", 17),
    _vision("vit_s16_legacy_op14", "vit_s16", "legacy", 14, note="ViT-S/16: 12 layers, hidden 384, 6 heads"),
    _vision("maxvit_t_legacy_op17_b1", "maxvit_t", "legacy", 17, batch=None, note="batch fixed at 1"),
    _vision("ssdlite320_mobilenet_v3_large_legacy_op11", "ssdlite320_mobilenet_v3_large", "legacy", 11,
            batch=None, side=320,
            note="detection: 320x320 input, batch fixed at 1, post-processing included"),
    _vision("mnasnet0_5_legacy_op12", "mnasnet0_5", "legacy", 12),
    # torchvision, dynamo exporter
    _vision("resnet18_dynamo_op18", "resnet18", "dynamo", 18),
    _vision("mobilenet_v3_large_dynamo_op18", "mobilenet_v3_large", "dynamo", 18),
    _vision("efficientnet_b0_dynamo_op18", "efficientnet_b0", "dynamo", 18),
    _vision("regnet_x_400mf_dynamo_op18", "regnet_x_400mf", "dynamo", 18),
    _vision("shufflenet_v2_x0_5_dynamo_op18_b1", "shufflenet_v2_x0_5", "dynamo", 18, batch=None,
            note="batch fixed at 1"),
    _vision("googlenet_dynamo_op18", "googlenet", "dynamo", 18, ctor_kw={"init_weights": True}),
    _vision("convnext_tiny_dynamo_op18", "convnext_tiny", "dynamo", 18),
    _vision("swin_t_dynamo_op18_b1", "swin_t", "dynamo", 18, batch=None,
            note="batch fixed at 1 (torch.export specializes Swin's batch)"),
    _vision("vit_s16_dynamo_op18", "vit_s16", "dynamo", 18, note="ViT-S/16: 12 layers, hidden 384, 6 heads"),
    _vision("resnet50_dynamo_op18_dynhw", "resnet50", "dynamo", 18, hw=True, note="dynamic H/W"),
    # transformers, random-weight configs
    _encoder("bert_l4_legacy_op14", "bert", "legacy", 14, note="BERT-small shape: 4 layers, hidden 512"),
    _encoder("bert_l4_dynamo_op18", "bert", "dynamo", 18,
             note="BERT-small shape: 4 layers, hidden 512, SDPA"),
    _encoder("distilbert_l3_legacy_op13_fixed", "distilbert", "legacy", 13, fixed=True,
             note="3 layers, batch 1 and sequence 128 fixed"),
    _encoder("roberta_l4_dynamo_op18", "roberta", "dynamo", 18, note="4 layers, hidden 512, SDPA"),
    _encoder("t5_encoder_l4_legacy_op14", "t5", "legacy", 14, note="t5-small widths, 4 layers, vocab 8192"),
    _encoder("t5_encoder_l4_dynamo_op18", "t5", "dynamo", 18, note="t5-small widths, 4 layers, vocab 8192"),
    _decoder("gpt2_l4_legacy_op14", "gpt2", "legacy", 14, cache=False, note="no KV cache"),
    _decoder("gpt2_l4_kv_legacy_op15", "gpt2", "legacy", 15, cache=True, note="KV cache in and out"),
    _decoder("gpt2_l4_kv_dynamo_op18", "gpt2", "dynamo", 18, cache=True, note="KV cache in and out"),
    _decoder("llama_l4_kv_legacy_op17", "llama", "legacy", 17, cache=True,
             note="Llama architecture, GQA 8/2 heads, KV cache"),
    _decoder("llama_l4_kv_dynamo_op18", "llama", "dynamo", 18, cache=True,
             note="Llama architecture, GQA 8/2 heads, KV cache"),
    _decoder("llama_l4_dynamo_op18_nocache", "llama", "dynamo", 18, cache=False, note="no KV cache"),
    _whisper("whisper_tiny_encoder_legacy_op17", "legacy", 17),
    _whisper("whisper_tiny_encoder_dynamo_op18", "dynamo", 18),
    # onnxruntime's optimizer, written out
    Derived("resnet18_legacy_op11_b1_ort_extended", "resnet18_legacy_op11_b1", "ort-extended"),
    Derived("mobilenet_v3_small_legacy_op14_ort_basic", "mobilenet_v3_small_legacy_op14", "ort-basic"),
    Derived("efficientnet_b0_dynamo_op18_ort_extended", "efficientnet_b0_dynamo_op18", "ort-extended"),
    Derived("bert_l4_legacy_op14_ort_extended", "bert_l4_legacy_op14", "ort-extended"),
    Derived("gpt2_l4_legacy_op14_ort_basic", "gpt2_l4_legacy_op14", "ort-basic"),
    # onnxruntime.quantization
    Derived("resnet18_legacy_op13_nofold_qdq", "resnet18_legacy_op13_nofold", "quant-qdq"),
    Derived("efficientnet_b0_legacy_op13_qdq", "efficientnet_b0_legacy_op13", "quant-qdq"),
    Derived("mobilenet_v2_legacy_op12_dynhw_qoperator", "mobilenet_v2_legacy_op12_dynhw", "quant-qoperator"),
    Derived("squeezenet1_1_legacy_op11_dynhw_qoperator", "squeezenet1_1_legacy_op11_dynhw",
            "quant-qoperator"),
    Derived("bert_l4_legacy_op14_qdynamic", "bert_l4_legacy_op14", "quant-dynamic"),
    Derived("gpt2_l4_legacy_op14_qdynamic", "gpt2_l4_legacy_op14", "quant-dynamic"),
    Derived("bert_l4_dynamo_op18_qdq", "bert_l4_dynamo_op18", "quant-qdq"),
    # onnx.helper, older styles
    Hand("hand_cnn_bn_muladd_op9", "vgg_style", 9, _hand_bn_muladd, note="BatchNorm as Mul+Add after Conv"),
    Hand("hand_mlp_gemm_transb_op7", "mlp", 7, _hand_mlp, note="Gemm transB, opset-7 BatchNormalization"),
    Hand("hand_unet_upsample_op9", "unet", 9, _hand_unet, note="Upsample (opset 9), 128x128"),
    Hand("hand_lenet_op7_b1", "lenet", 7, _hand_lenet, note="IR 3, initializers as inputs, batch 1"),
    Hand("hand_se_resnet_keras_op9", "se_resnet", 9, _hand_se_resnet,
         note="NHWC input, Mul+Add BatchNorm, Clip(0,6), SE gates, 160x160"),
    # Round eight: families and export forms the first list lacked, or had in one half only (every model
    # listed here is kept, whichever half its name falls in)
    _decoder("gpt2_l2_legacy_op13", "gpt2", "legacy", 13, cache=False, layers=2, note="2 layers, no cache"),
    _decoder("gpt2_l6_legacy_op14", "gpt2", "legacy", 14, cache=False, layers=6, note="6 layers, no cache"),
    _decoder("gpt2_l4_legacy_op17_b1", "gpt2", "legacy", 17, cache=False, fixed=True,
             note="batch 1 and sequence 128 fixed, no KV cache"),
    _decoder("gpt2_l4_dynamo_op18_nocache", "gpt2", "dynamo", 18, cache=False, note="no KV cache"),
    _vision("densenet121_legacy_op13", "densenet121", "legacy", 13),
    _vision("densenet121_dynamo_op18", "densenet121", "dynamo", 18),
    _vision("vit_b16_legacy_op14", "vit_b_16", "legacy", 14, note="torchvision's ViT-B/16"),
    # (ssdlite320_mobilenet_v3_large_dynamo_op18 was listed too: torch.export 2.14 refuses its
    # post-processing)
    _whisper("whisper_tiny_encoder_legacy_op14", "legacy", 14),
    _encoder("roberta_l4_legacy_op14", "roberta", "legacy", 14, note="4 layers, hidden 512"),
    Derived("distilbert_l3_legacy_op13_qdynamic", "distilbert_l3_legacy_op13_fixed", "quant-dynamic"),
    Derived("t5_encoder_l4_legacy_op14_qdynamic", "t5_encoder_l4_legacy_op14", "quant-dynamic"),
    Derived("llama_l4_kv_legacy_op17_qdynamic", "llama_l4_kv_legacy_op17", "quant-dynamic"),
    Derived("roberta_l4_legacy_op14_qdynamic", "roberta_l4_legacy_op14", "quant-dynamic"),
    Derived("gpt2_l4_legacy_op14_qdq", "gpt2_l4_legacy_op14", "quant-qdq"),
    Hand("hand_mlp_gemm_relu_op9", "mlp", 9, _hand_mlp_gemm_relu, note="Gemm without transB, Relu, Softmax"),
    Hand("hand_mlp_matmul_add_op11", "mlp", 11, _hand_mlp_matmul_add,
         note="tf2onnx-style Dense: MatMul, bias Add, activation; residual Adds"),
]
BY_NAME = {m.name: m for m in MODELS}


# ------------------------------------------------------------------------------------------------ building

def save_graph_only(model: onnx.ModelProto, path: Path) -> None:
    """Move every initializer of 1 KiB or more to PATH.data next to the file (onnx appends to an existing data
    file, so an old one goes first)."""
    data = path.with_name(path.name + ".data")
    if data.exists():
        data.unlink()
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name, size_threshold=SIZE_THRESHOLD)
    if data.exists() and data.stat().st_size == 0:
        data.unlink()


def _bound_shape(vi: onnx.ValueInfoProto, dims: dict[str, int]) -> tuple[int, ...]:
    out = []
    for i, d in enumerate(vi.type.tensor_type.shape.dim):
        if d.HasField("dim_value"):
            out.append(d.dim_value)
        elif d.dim_param in dims:
            out.append(dims[d.dim_param])
        elif i == 0:
            out.append(1)
        else:
            raise SystemExit(f"input {vi.name}: dim {i} {d.dim_param!r} has no binding")
    return tuple(out)


def _feeds(path: Path, dims: dict[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    m = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    feeds = {}
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        shape = _bound_shape(vi, dims)
        dtype = helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        if np.issubdtype(dtype, np.floating):
            feeds[vi.name] = rng.standard_normal(shape).astype(dtype)
        else:  # ids and masks: ones are valid for both
            feeds[vi.name] = np.ones(shape, dtype)
    return feeds


def _run(path: Path, feeds: dict) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def export_torch(spec: TorchModel, path: Path) -> str:
    import torch

    torch.manual_seed(0)
    module = spec.module().eval()
    example = spec.inputs()
    with torch.no_grad():
        if spec.exporter == "legacy":
            torch.onnx.export(module, example, str(path), input_names=list(spec.input_names),
                              output_names=list(spec.output_names), dynamic_axes=spec.dynamic or None,
                              opset_version=spec.opset, do_constant_folding=spec.fold,
                              keep_initializers_as_inputs=spec.initializers_as_inputs, dynamo=False)
        else:
            dims: dict[str, object] = {}
            shapes = []
            for name in spec.input_names:
                axes = spec.dynamic.get(name, {})
                # max 1024: GPT-2's positions end there, and torch.export checks the range against the code
                shapes.append({a: dims.setdefault(d, torch.export.Dim(d, max=1024)) for a, d in axes.items()}
                              or None)
            if spec.varargs_from is not None:
                shapes = [*shapes[:spec.varargs_from], tuple(shapes[spec.varargs_from:])]
            torch.onnx.export(module, example, str(path), input_names=list(spec.input_names),
                              output_names=list(spec.output_names), dynamic_shapes=tuple(shapes),
                              opset_version=spec.opset, dynamo=True, external_data=True, verbose=False)
        expected = module(*example)
    proto = onnx.load(str(path))  # with its weights, wherever the exporter put them
    _drop_stack_traces(proto.graph)
    for f in path.parent.glob(path.name + "*.data"):
        f.unlink()
    save_graph_only(proto, path)
    got = _run(path, {n: t.numpy() for n, t in zip(_real_inputs(path), example, strict=True)})
    first = next((t for t in torch.utils._pytree.tree_leaves(expected) if isinstance(t, torch.Tensor)), None)
    if first is None or first.numel() == 0:
        return "onnxruntime runs it (no tensor output to compare)"
    scale = float(first.abs().max())
    same = got[0].shape == tuple(first.shape)
    diff = float(np.max(np.abs(got[0] - first.numpy()))) if same else float("inf")
    return f"onnxruntime vs torch: max|diff| {diff:.1e} of max|ref| {scale:.1e}" + (
        "" if diff <= 1e-3 * max(scale, 1.0) else "  (MISMATCH: kept, the graph is what the exporter wrote)")


def _drop_stack_traces(graph: onnx.GraphProto) -> None:
    """The dynamo exporter records, per node, the Python stack that made it: this machine's paths and this
    script's line numbers, so every edit of the script would change the bytes of every export. Only those
    entries go; the graph and the rest of its metadata stay as exported."""
    for n in graph.node:
        kept = [p for p in n.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
        if len(kept) != len(n.metadata_props):
            del n.metadata_props[:]
            n.metadata_props.extend(kept)
        for a in n.attribute:
            for g in [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs):
                _drop_stack_traces(g)


def _real_inputs(path: Path) -> list[str]:
    m = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    return [v.name for v in m.graph.input if v.name not in inits]


class _Reader:
    """Random calibration batches for quantize_static: 4 of them, seeded."""

    def __init__(self, feeds: list[dict]):
        self.it = iter(feeds)

    def get_next(self):
        return next(self.it, None)

    def rewind(self):
        pass


def derive(spec: Derived, base_path: Path, base_dims: dict[str, int], path: Path) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_out = Path(tmp) / path.name
        if spec.kind.startswith("ort-"):
            so = ort.SessionOptions()
            so.graph_optimization_level = {"ort-basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                           "ort-extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                           }[spec.kind]
            so.optimized_model_filepath = str(tmp_out)
            so.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                        path.name + ".data")
            so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes",
                                        str(SIZE_THRESHOLD))
            ort.InferenceSession(str(base_path), so, providers=["CPUExecutionProvider"])
        else:
            from onnxruntime import quantization as q

            if spec.kind == "quant-dynamic":
                q.quantize_dynamic(str(base_path), str(tmp_out), weight_type=q.QuantType.QInt8,
                                   use_external_data_format=True)
            else:
                rng = np.random.default_rng(0)
                batches = [_feeds(base_path, base_dims, rng) for _ in range(4)]
                fmt = q.QuantFormat.QDQ if spec.kind == "quant-qdq" else q.QuantFormat.QOperator
                # ORT's documented first step (shape inference and its basic optimizer): without it the
                # legacy exporter's shared zero biases behind Identity nodes stop QOperator's Conv
                pre = Path(tmp) / "pre.onnx"
                # (onnx's shape inference only: ORT's symbolic one gives up on the dynamo BERT), in tmp:
                # it leaves temporary models in the working directory
                with contextlib.chdir(tmp):
                    q.quant_pre_process(str(base_path.resolve()), str(pre), skip_symbolic_shape=True,
                                        save_as_external_data=True)
                q.quantize_static(str(pre), str(tmp_out), _Reader(batches), quant_format=fmt,
                                  activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                                  use_external_data_format=True)
        proto = onnx.load(str(tmp_out))
    save_graph_only(proto, path)
    out = _run(path, _feeds(path, base_dims, np.random.default_rng(0)))
    return f"onnxruntime runs it: first output {list(out[0].shape)}"


def build_hand(spec: Hand, path: Path) -> str:
    proto = spec.build(np.random.default_rng(0))
    onnx.checker.check_model(proto, full_check=True)
    save_graph_only(proto, path)
    out = _run(path, _feeds(path, spec.dims, np.random.default_rng(0)))
    return f"onnxruntime runs it: first output {list(out[0].shape)}"


def _exporter(spec) -> str:
    if isinstance(spec, TorchModel):
        import torch

        return f"torch.onnx {spec.exporter} (torch {torch.__version__.split('+')[0]})"
    if isinstance(spec, Derived):
        what = {"ort-basic": "optimizer ORT_ENABLE_BASIC", "ort-extended": "optimizer ORT_ENABLE_EXTENDED",
                "quant-dynamic": "quantize_dynamic (int8 weights)",
                "quant-qdq": "quantize_static QDQ (u8 activations, s8 weights)",
                "quant-qoperator": "quantize_static QOperator (u8 activations, s8 weights)"}[spec.kind]
        return f"onnxruntime {ort.__version__} {what}"
    return f"onnx.helper (onnx {onnx.__version__})"


def _opset(path: Path) -> int:
    m = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))


def _check_dims(path: Path, dims: dict[str, int]) -> None:
    """Every symbolic dim of the inputs is bound by `dims`, or is a leading dim named like a batch."""
    m = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        for i, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.HasField("dim_value") or d.dim_param in dims:
                continue
            if i == 0 and (d.dim_param.lower() in ("n", "b") or "batch" in d.dim_param.lower()):
                continue
            raise RuntimeError(f"input {vi.name} dim {i} ({d.dim_param or 'unnamed'}) is not bound")


def build(spec, out: Path, done: dict[str, dict]) -> dict:
    path = out / f"{spec.name}.onnx"
    if isinstance(spec, TorchModel):
        check, dims, family = export_torch(spec, path), spec.dims, spec.family
    elif isinstance(spec, Derived):
        base = done[spec.base]
        check = derive(spec, out / base["file"], base["dims"], path)
        dims, family = base["dims"], base["family"]
    else:
        check, dims, family = build_hand(spec, path), spec.dims, spec.family
    _check_dims(path, dims)
    data = path.with_name(path.name + ".data")
    m = onnx.load(str(path), load_external_data=False)
    entry = {"name": spec.name, "half": half_of(spec.name), "family": family, "exporter": _exporter(spec),
             "opset": _opset(path), "file": path.name, "sha256": sha256_file(str(path)),
             "dims": dims, "nodes": len(m.graph.node), "onnx_bytes": path.stat().st_size,
             "data_bytes": data.stat().st_size if data.exists() else 0}
    if isinstance(spec, Derived):
        entry["derived_from"] = spec.base
    if spec.note:
        entry["note"] = spec.note
    print(f"  {check}")
    return entry


def _with_bases(names: list[str]) -> list[str]:
    want: list[str] = []
    for n in names:
        chain = [n]
        while isinstance(BY_NAME[chain[-1]], Derived):
            chain.append(BY_NAME[chain[-1]].base)
        want += [c for c in reversed(chain) if c not in want]
    return want


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("corpus"))
    ap.add_argument("--only", nargs="+", metavar="NAME",
                    help="build only these (and the models they derive from)")
    ap.add_argument("--list", action="store_true", help="print the models and their halves, build nothing")
    args = ap.parse_args(argv)
    args.out = args.out.resolve()  # the quantizer's pre-processing runs in a temporary working directory
    if args.list:
        for m in MODELS:
            kind = (m.exporter if isinstance(m, TorchModel) else m.kind if isinstance(m, Derived)
                    else "onnx.helper")
            print(f"{m.name:48s} {half_of(m.name):8s} {kind}")
        return 0
    unknown = [n for n in args.only or () if n not in BY_NAME]
    if unknown:
        raise SystemExit(f"unknown model(s): {', '.join(unknown)}")
    names = _with_bases(args.only) if args.only else [m.name for m in MODELS]

    args.out.mkdir(parents=True, exist_ok=True)
    manifest_path = args.out / MANIFEST
    old = {}
    if manifest_path.exists():
        old = {m["name"]: m for m in json.loads(manifest_path.read_text())["models"]}
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    # nn.MultiheadAttention's fused inference path cannot be exported (ViT)
    torch.backends.mha.set_fastpath_enabled(False)
    done: dict[str, dict] = {n: m for n, m in old.items() if (args.out / m["file"]).exists()}
    failed: dict[str, str] = {}
    start = time.time()
    for name in names:
        spec = BY_NAME[name]
        if args.only and name not in args.only and name in done:
            continue  # a base already built serves its derived models as it is
        if isinstance(spec, Derived) and spec.base in failed:
            failed[name] = f"its base {spec.base} failed"
            continue
        t0 = time.time()
        print(f"== {name} ({half_of(name)})", flush=True)
        try:
            done[name] = build(spec, args.out, done)
        except Exception as e:  # one model an exporter cannot take is reported, and the others still built
            failed[name] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e) else ''}"
            print(f"  FAILED {failed[name]}")
            if os.environ.get("CORPUS_DEBUG"):
                traceback.print_exc()
            for f in args.out.glob(f"{name}.onnx*"):
                f.unlink()
            done.pop(name, None)
            continue
        e = done[name]
        changed = name in old and old[name]["sha256"] != e["sha256"]
        print(f"  {e['nodes']} nodes, opset {e['opset']}, {e['onnx_bytes']:,} B graph + "
              f"{e['data_bytes']:,} B "
              f"weights, {time.time() - t0:.1f} s" + ("  (bytes differ from the previous manifest)" if changed
                                                       else ""), flush=True)

    order = [m.name for m in MODELS if m.name in done]
    manifest = {"rule": "half = tuning if sha256(name.encode('utf-8'))[0] is even, else heldout "
                        "(scripts/corpus.py: half_of); never changed",
                "bindings": "dims binds the symbolic dims other than the batch; an unbound batch is 1",
                "models": [done[n] for n in order]}
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    big = sorted(done[n]["file"] for n in order if done[n]["onnx_bytes"] > COMMIT_LIMIT)
    (args.out / ".gitignore").write_text(
        "# Weights: scripts/build_corpus.py regenerates them (random, seeded)\n*.data\n"
        "# Graph-only files over 1 MB: regenerated, not committed\n" + "".join(f"/{b}\n" for b in big))
    tally = {h: sum(1 for n in order if done[n]["half"] == h) for h in ("tuning", "heldout")}
    print(f"\n{len(order)} models in {manifest_path} (tuning {tally['tuning']}, "
          f"held-out {tally['heldout']}); "
          f"this run {time.time() - start:.0f} s")
    for name, why in failed.items():
        print(f"failed: {name}: {why}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
