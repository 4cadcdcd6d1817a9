"""Our MACs for every corpus model of a torchvision family, against torchvision's published figure.

torchvision publishes each weight's cost as ``meta["_ops"]`` ("GFLOPS" in its model table,
https://pytorch.org/vision/stable/models.html; the figures count one multiply-add as one op, so they are
GMACs: ResNet-50 4.089). PUBLISHED holds those figures as torchvision 0.29.1 ships them (read with
``torchvision.models.get_model_weights(name).DEFAULT.meta["_ops"]``), at the resolution torchvision states:
224x224 except Inception v3 (299x299) and SSDlite (320x320). The corpus exports Inception v3 at 224, so
its row compares with ``torch.utils.flop_counter.FlopCounterMode`` / 2 at 224 instead, measured with torch
2.14.1 (the same count gives 5,713,216,096 at 299: torchvision's 5.713).

Every derived variant (onnxruntime-optimized, QDQ, QOperator) must give its source's count. A model matches
when its MACs, in billions rounded to the published figure's three decimals, equal it. Run from the
repository root after ``scripts/build_corpus.py``::

    python scripts/check_published_macs.py [--corpus corpus]

Exits 1 if any model differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tabulate import tabulate

from onnx_hwutil.bindings import Bindings
from onnx_hwutil.profile import Profile, bind

PUBLISHED = {  # family: (GMACs, where)
    "resnet18": (1.814, "torchvision ResNet18_Weights.IMAGENET1K_V1"),
    "resnet50": (4.089, "torchvision ResNet50_Weights.IMAGENET1K_V2"),
    "resnext50_32x4d": (4.230, "torchvision ResNeXt50_32X4D_Weights.IMAGENET1K_V2"),
    "mobilenet_v2": (0.301, "torchvision MobileNet_V2_Weights.IMAGENET1K_V2"),
    "mobilenet_v3_small": (0.057, "torchvision MobileNet_V3_Small_Weights.IMAGENET1K_V1"),
    "mobilenet_v3_large": (0.217, "torchvision MobileNet_V3_Large_Weights.IMAGENET1K_V2"),
    "efficientnet_b0": (0.386, "torchvision EfficientNet_B0_Weights.IMAGENET1K_V1"),
    "regnet_y_400mf": (0.402, "torchvision RegNet_Y_400MF_Weights.IMAGENET1K_V2"),
    "regnet_x_400mf": (0.414, "torchvision RegNet_X_400MF_Weights.IMAGENET1K_V2"),
    "densenet121": (2.834, "torchvision DenseNet121_Weights.IMAGENET1K_V1"),
    "inception_v3": (2.838, "FlopCounterMode / 2 at 224 (torchvision's 5.713 is at 299)"),
    "googlenet": (1.498, "torchvision GoogLeNet_Weights.IMAGENET1K_V1"),
    "shufflenet_v2_x1_0": (0.145, "torchvision ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1"),
    "shufflenet_v2_x0_5": (0.040, "torchvision ShuffleNet_V2_X0_5_Weights.IMAGENET1K_V1"),
    "squeezenet1_1": (0.349, "torchvision SqueezeNet1_1_Weights.IMAGENET1K_V1"),
    "mnasnet0_5": (0.104, "torchvision MNASNet0_5_Weights.IMAGENET1K_V1"),
    "convnext_tiny": (4.456, "torchvision ConvNeXt_Tiny_Weights.IMAGENET1K_V1"),
    "swin_t": (4.491, "torchvision Swin_T_Weights.IMAGENET1K_V1"),
    "maxvit_t": (5.558, "torchvision MaxVit_T_Weights.IMAGENET1K_V1"),
    "vit_b_16": (17.564, "torchvision ViT_B_16_Weights.IMAGENET1K_V1"),
    "ssdlite320_mobilenet_v3_large": (0.583, "torchvision SSDLite320_MobileNet_V3_Large_Weights.COCO_V1"),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default="corpus")
    args = ap.parse_args()
    corpus = Path(args.corpus)
    manifest = json.loads((corpus / "manifest.json").read_text())
    rows, bad = [], 0
    for e in manifest["models"]:
        if e["family"] not in PUBLISHED:
            continue
        gmacs, where = PUBLISHED[e["family"]]
        dims = {k: int(v) for k, v in e.get("dims", {}).items()}
        p = Profile(bind(corpus / e["file"], Bindings(dims=dims)))
        macs = p.costs.total.macs
        ok = round(macs / 1e9, 3) == gmacs
        bad += not ok
        rows.append([e["name"], e["half"], f"{macs:,}", f"{gmacs:.3f}", "yes" if ok else
                     f"no ({100 * (macs / 1e9 / gmacs - 1):+.2f}%)", p.costs.uncosted_nodes, where])
    print(tabulate(rows, ["model", "half", "our MACs", "published GMACs", "match", "nodes not costed",
                          "source"], tablefmt="github"))
    print(f"\n{len(rows) - bad} of {len(rows)} match")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
