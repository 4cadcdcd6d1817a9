"""Exact counts on the bundled models, against published figures and a hand computation."""

import pytest
from conftest import BUNDLED

from onnx_hwutil.profile import Profile

# MACs at batch 1 as torchvision / fvcore publish them ("GFLOPS" in torchvision's tables are GMACs);
# ViT-B/16 includes the attention matmuls; BERT-base is the encoder at sequence 128 without the pooler.
PUBLISHED_MACS = {
    "resnet18": 1_814_073_344,
    "resnet50": 4_089_184_256,
    "mobilenet_v2": 300_774_272,
    "vit_b_16": 17_563_828_224,
    "bert_base": 11_173_625_856,
}


@pytest.mark.parametrize("name", BUNDLED)
def test_macs_match_published(bundled, name):
    p = Profile(bundled(name))
    assert p.totals.macs == PUBLISHED_MACS[name]
    assert p.uncovered == []
    assert p.unresolved == []


@pytest.mark.parametrize("name", ["resnet50", "bert_base"])
def test_batch_scales_macs_linearly(bundled, name):
    assert Profile(bundled(name, 8)).totals.macs == 8 * PUBLISHED_MACS[name]


def _resnet18_layers():
    """(cin, cout, kernel, output side) of every conv, then the classifier, written out from the paper."""
    convs = [(3, 64, 7, 112)]
    for cin, cout, side in [(64, 64, 56), (64, 128, 28), (128, 256, 14), (256, 512, 7)]:
        convs += [(cin, cout, 3, side), (cout, cout, 3, side)]  # block 0
        if cin != cout:
            convs.append((cin, cout, 1, side))  # projection shortcut
        convs += [(cout, cout, 3, side), (cout, cout, 3, side)]  # block 1
    return convs


def test_resnet18_by_hand(bundled):
    p = Profile(bundled("resnet18"))
    t = p.totals
    convs = _resnet18_layers()
    conv_macs = sum(cin * cout * k * k * s * s for cin, cout, k, s in convs)
    fc_macs = 512 * 1000
    assert conv_macs + fc_macs == 1_814_073_344

    # FLOPs: 2 per MAC; the exporter folds BatchNorm into each conv's bias: one add per output element.
    bias_adds = sum(cout * s * s for _, cout, _, s in convs) + 1000
    blocks = [(64, 56)] * 2 + [(128, 28)] * 2 + [(256, 14)] * 2 + [(512, 7)] * 2
    relus = 64 * 112 * 112 + sum(2 * c * s * s for c, s in blocks)  # stem, then two per block
    residual_adds = sum(c * s * s for c, s in blocks)
    maxpool = 64 * 56 * 56 * 9  # 3x3 window per output
    avgpool = 512 * 7 * 7 + 512  # sum every element, one divide per channel
    flops = 2 * (conv_macs + fc_macs) + bias_adds + relus + residual_adds + maxpool + avgpool
    assert t.flops == flops

    params = sum(cin * cout * k * k + cout for cin, cout, k, _ in convs) + 512 * 1000 + 1000
    assert t.params == params == 11_684_712
    assert t.weight_bytes == 4 * params

    # Peak live activations (fp32): during the stem Relu, its input and output (64x112x112 each) are alive;
    # the input image died after conv1, and nothing later is larger.
    peak_activations = 2 * 4 * 64 * 112 * 112
    assert t.peak_memory_bytes == 4 * params + peak_activations


def test_precision_changes_bytes_not_counts(bundled):
    fp32 = Profile(bundled("resnet18"), "fp32").totals
    fp16 = Profile(bundled("resnet18"), "fp16").totals
    int8 = Profile(bundled("resnet18"), "int8").totals
    assert fp32.macs == fp16.macs == int8.macs and fp32.flops == fp16.flops
    assert fp16.weight_bytes * 2 == fp32.weight_bytes == int8.weight_bytes * 4
    # The input is float, so every byte count halves at fp16 (int64 shape tensors are not re-priced).
    assert fp16.dram_bytes * 2 == pytest.approx(fp32.dram_bytes, rel=1e-4)


def test_bert_keeps_integer_tensors_at_their_dtype(bundled):
    fp16 = Profile(bundled("bert_base"), "fp16")
    ids = [n for n in fp16.to_dict()["nodes"] if n["op_type"] == "Gather"]
    assert ids, "BERT has embedding Gathers"
    # The word-embedding Gather reads 128 int64 ids (8 bytes each) and 128 rows of 768 fp16 values.
    word = next(n for n in ids if "word_embeddings" in n["name"])
    assert word["bytes_read"] == 128 * 8
    assert word["weight_bytes"] == 128 * 768 * 2
    assert word["bytes_written"] == 128 * 768 * 2
