import os
import pathlib

import pytest
from hypothesis import settings

# CI runs the same examples every time (a red build names a real regression, not a new random draw);
# locally hypothesis explores as usual.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
BUNDLED = ["resnet18", "resnet50", "mobilenet_v2", "vit_b_16", "bert_base"]


def model_path(name: str) -> str:
    return os.fspath(MODELS / f"{name}.onnx")


@pytest.fixture(scope="session")
def bundled():
    from onnx_hwutil.profile import Bindings, bind

    cache = {}

    def get(name: str, batch: int = 1):
        key = (name, batch)
        if key not in cache:
            cache[key] = bind(model_path(name), Bindings(batch=batch))
        return cache[key]

    return get
