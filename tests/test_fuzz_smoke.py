"""The fuzz campaign, small: 300 mutated models must each end in a result or one clean error."""

import importlib.util
import pathlib

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "fuzz.py"


def _fuzz():
    spec = importlib.util.spec_from_file_location("fuzz", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fuzz_smoke():
    r = _fuzz().campaign(300, seed=7, jobs=1, bundled=False)
    assert r["cases"] == 300
    assert r["bugs"] == 0, r["bug_list"][:5]
    assert r["results"] > 50 and r["errors"] > 50  # both outcomes exercised: the mutations bite
