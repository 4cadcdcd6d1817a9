"""onnx-hwutil: how well an ONNX model will use a given piece of hardware, and why.

    >>> import onnx_hwutil
    >>> p = onnx_hwutil.profile("models/resnet50.onnx", batch=1)
    >>> p.totals.macs
    4089184256
    >>> [round(s.latency_s * 1e3, 3) for s in onnx_hwutil.analyze("models/resnet50.onnx", ["h100-sxm5"], [1])]
    [0.507]
"""

import os
import sys
import types

# onnxruntime writes a telemetry database under the user's home cache folder as it is imported; a static
# analyzer writes nothing the user did not ask for. Read at onnxruntime's import, so set before any of ours.
if not os.environ.get("ORT_DISABLE_TELEMETRY"):  # unset or empty; a user's explicit 0 stands
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"

from .errors import HwUtilError

__all__ = ["HwUtilError", "Profile", "analyze", "profile"]
__version__ = "0.1.0"

# The API is imported on first use, not with the package: `onnx-hwutil hw list` or `--version` should not pay
# for onnx, onnxruntime and networkx (issue 16: each command imports only what it uses).
_LAZY = {"analyze": "analysis", "Profile": "profile"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    """`onnx_hwutil.profile` is the API function, though a submodule has the same name: importing the
    submodule binds the package attribute to it, which this property ignores."""

    @property
    def profile(self):
        from .profile import profile

        return profile

    @profile.setter
    def profile(self, value) -> None:
        pass


sys.modules[__name__].__class__ = _Package
