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
# A file protobuf can parse at all is under 2 GiB; larger models keep their weights as external data.
MAX_FILE_BYTES = (1 << 31) - 1
# One name (node, tensor, op): exporters write at most a few hundred characters.
MAX_NAME_CHARS = _env("ONNX_HWUTIL_MAX_NAME_CHARS", 1 << 16)
# One dim or batch a user binds: 2^32 is past any batch, sequence or image side a model takes.
MAX_DIM = 1 << 32
# Values onnx's data propagation may build for a generator (Range) of constants: it materializes them at
# about 150 bytes an element, so 2^20 is 150 MB; past that shapes come from inference without it.
MAX_PROPAGATED_ELEMENTS = 1 << 20
# A hardware spec file: the bundled ones are under 20 KB, a calibrated one under 100 KB.
MAX_SPEC_BYTES = 1 << 20
# Points one sweep maps (raise with --max-points) and worker processes per core.
MAX_SWEEP_POINTS = 4096
WORKERS_PER_CORE = 2
