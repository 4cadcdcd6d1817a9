"""The validation corpus's split (scripts/corpus.py): a pure function of each model's name, and a committed
manifest that agrees with it. No torch: the build script's model list is read without exporting anything."""

import hashlib
import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
CORPUS = ROOT / "corpus"


def _load(name: str):
    # the scripts import corpus.py as a sibling module, as they do when run as `python scripts/NAME.py`
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec = importlib.util.spec_from_file_location(f"_corpus_test_{name}", SCRIPTS / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # dataclasses look their module up there
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(SCRIPTS))


corpus = _load("corpus")


def test_half_is_the_parity_of_the_first_sha256_byte_of_the_name():
    for name in ["resnet18_legacy_op11_b1", "hand_lenet_op7_b1", "x", "", "ü-model", "gpt2_l4_kv_op18"]:
        first = hashlib.sha256(name.encode("utf-8")).digest()[0]
        assert corpus.half_of(name) == ("tuning" if first % 2 == 0 else "heldout")


def test_half_is_a_pure_function_of_the_name():
    names = [f"model_{i}" for i in range(200)]
    once = [corpus.half_of(n) for n in names]
    assert once == [corpus.half_of(n) for n in reversed(names)][::-1]
    assert set(once) == {"tuning", "heldout"}
    # the same in a fresh interpreter (no per-process hash seed can enter)
    code = (f"import sys; sys.path.insert(0, {str(SCRIPTS)!r}); import corpus; "
            f"print(','.join(corpus.half_of(n) for n in {names[:20]!r}))")
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "123"})
    assert fresh.stdout.strip().split(",") == once[:20]


def test_fixed_examples_never_change_half():
    # Pinned: if the rule ever changed, every published held-out number would silently change meaning.
    assert corpus.half_of("resnet18_legacy_op11_b1") == "tuning"
    assert corpus.half_of("resnext50_32x4d_legacy_op13") == "heldout"
    assert corpus.half_of("bert_l4_legacy_op14") == "tuning"
    assert corpus.half_of("hand_lenet_op7_b1") == "heldout"


def test_build_script_names_are_unique_and_derived_models_name_a_base():
    build = _load("build_corpus")
    names = [m.name for m in build.MODELS]
    assert len(names) == len(set(names))
    assert len(names) >= 40
    for m in build.MODELS:
        if isinstance(m, build.Derived):
            assert m.base in build.BY_NAME and names.index(m.base) < names.index(m.name)


@pytest.mark.skipif(not (CORPUS / corpus.MANIFEST).exists(), reason="no committed corpus manifest")
def test_manifest_agrees_with_the_rule():
    build = _load("build_corpus")
    manifest = corpus.load_manifest(str(CORPUS))
    names = [m["name"] for m in manifest["models"]]
    assert len(names) == len(set(names))
    bundled = {p.stem for p in (ROOT / "models").glob("*.onnx")}
    for m in manifest["models"]:
        assert m["half"] == corpus.half_of(m["name"]), m["name"]
        assert m["name"] in build.BY_NAME, f"{m['name']}: in the manifest, not in scripts/build_corpus.py"
        assert m["name"] not in bundled and "/" not in m["file"], "the bundled models belong to neither half"
        path = CORPUS / m["file"]
        if path.exists():  # committed graph-only files are the ones that were measured
            assert corpus.sha256_file(str(path)) == m["sha256"], m["name"]
    # entries() refuses a manifest whose half disagrees with the rule, and filters by half
    both = corpus.entries(str(CORPUS))
    assert [e.name for e in both] == names
    assert {e.name for e in corpus.entries(str(CORPUS), "tuning")} == {
        n for n in names if corpus.half_of(n) == "tuning"}


def test_entries_refuse_a_model_listed_in_the_wrong_half(tmp_path):
    import json

    name = "resnet18_legacy_op11_b1"
    wrong = "heldout" if corpus.half_of(name) == "tuning" else "tuning"
    (tmp_path / corpus.MANIFEST).write_text(json.dumps({"models": [
        {"name": name, "half": wrong, "exporter": "x", "opset": 11, "file": f"{name}.onnx"}]}))
    with pytest.raises(ValueError, match="its name puts it in"):
        corpus.entries(str(tmp_path))
