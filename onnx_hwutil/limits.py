"""Resource bounds: what a static analyzer refuses before it can run out of memory or stack.

Real models stay far inside these; a file beyond them is malformed or hostile. Each limit can be raised
through its environment variable for the rare model that needs it.
"""

import os


def _env(name: str, default: int) -> int:
    try:
        return max(int(os.environ.get(name, default)), 1)
    except ValueError:
        return default


# Nodes in the whole model, subgraphs included: the largest published LLM exports have about 10^5.
MAX_NODES = _env("ONNX_HWUTIL_MAX_NODES", 2_000_000)
# Subgraph nesting (If inside Loop inside If...): real models nest two or three deep.
MAX_DEPTH = _env("ONNX_HWUTIL_MAX_DEPTH", 32)
# Elements of one tensor: 2^48 is 256 T elements, a petabyte at fp32.
MAX_ELEMENTS = 1 << 48
