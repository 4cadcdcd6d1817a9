"""The validation corpus's split rule and manifest, shared by the corpus scripts and tests (no torch here).

The rule (DESIGN.md, "Validation discipline"): a model's half is the parity of the first byte of the SHA-256
of its name, UTF-8 encoded: even -> "tuning", odd -> "heldout". It is a pure function of the name, so it is
decided once, when the name is chosen, and a model can only change halves by being renamed, i.e. by becoming
a different model. Fusion rules and calibrations may look at the tuning half only; the held-out half is only
measured. The bundled models in models/ belong to neither half.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

HALVES = ("tuning", "heldout")
MANIFEST = "manifest.json"
# A decoder with a KV cache runs its prefill: 128 new tokens, no past. Bound for the bundled models, whose
# dims these are (the corpus's own are in its manifest).
PREFILL_DIMS = {"sequence_length": 128, "past_sequence_length": 0, "total_sequence_length": 128}


def half_of(name: str) -> str:
    return "tuning" if hashlib.sha256(name.encode("utf-8")).digest()[0] % 2 == 0 else "heldout"


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Entry:
    name: str
    half: str
    exporter: str
    opset: int
    path: str  # absolute path of the .onnx file
    # Symbolic dims other than the batch, bound for every run (a decoder's sequence and past, an image's H/W);
    # an unbound leading batch dim is 1, as everywhere in the analyzer.
    dims: dict[str, int] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The exporter in one word, for tables."""
        e = self.exporter
        for key, short in (("legacy", "legacy"), ("dynamo", "dynamo"), ("ORT_ENABLE_BASIC", "ort-basic"),
                           ("ORT_ENABLE_EXTENDED", "ort-extended"), ("quantize_dynamic", "q-dynamic"),
                           ("QDQ", "q-qdq"), ("QOperator", "q-qoperator"), ("onnx.helper", "onnx.helper")):
            if key in e:
                return short
        return e


def bundled_dims(path: str) -> dict[str, int]:
    """The PREFILL_DIMS a model's inputs have (none for a model without a KV cache)."""
    import onnx

    m = onnx.load(path, load_external_data=False)
    names = {d.dim_param for v in m.graph.input for d in v.type.tensor_type.shape.dim if d.dim_param}
    return {k: v for k, v in PREFILL_DIMS.items() if k in names}


def load_manifest(folder: str) -> dict:
    with open(os.path.join(folder, MANIFEST), encoding="utf-8") as f:
        return json.load(f)


def entries(folder: str, half: str = "both") -> list[Entry]:
    """The manifest's models of one half ("tuning", "heldout") or of both, in manifest order. A manifest
    whose recorded half disagrees with the rule is refused: the rule, not the file, decides."""
    if half not in (*HALVES, "both"):
        raise ValueError(f"half {half!r}: one of tuning, heldout, both")
    out = []
    for m in load_manifest(folder)["models"]:
        if m["half"] != half_of(m["name"]):
            raise ValueError(f"{folder}/{MANIFEST}: {m['name']} is listed in {m['half']}, but its name puts "
                             f"it in {half_of(m['name'])}")
        if half in ("both", m["half"]):
            out.append(Entry(m["name"], m["half"], m["exporter"], m["opset"],
                             os.path.abspath(os.path.join(folder, m["file"])), dict(m.get("dims", {}))))
    return out


def model_groups(root: str, folders: list[str], corpus: str | None, half: str,
                 bundled: bool = True) -> list[tuple[str, list[tuple[str, str, str, dict]]]]:
    """What the corpus scripts measure, grouped for their tables: (title, [(name, exporter, path, dims)]).
    The bundled models and any extra folders first (neither half), then each asked half of the corpus."""
    import glob

    groups: list[tuple[str, list[tuple[str, str, str, dict]]]] = []
    paths = sorted(glob.glob(os.path.join(root, "models", "*.onnx"))) if bundled else []
    for folder in folders:
        paths += sorted(glob.glob(os.path.join(folder, "**", "*.onnx"), recursive=True))
    if paths:
        groups.append(("bundled models (neither half)" if corpus else "models",
                       [(os.path.relpath(p, root) if p.startswith(root) else p, "", p, bundled_dims(p))
                        for p in paths]))
    if corpus:
        for h in HALVES if half == "both" else (half,):
            groups.append((f"corpus, {h} half",
                           [(e.name, e.kind, e.path, e.dims) for e in entries(corpus, h)]))
    return groups
