"""Element sizes of ONNX tensor types, and how a chosen precision re-prices them.

`--precision model` keeps every tensor at the dtype the file declares, so a quantized model is priced as
quantized. Any other precision re-prices the *floating-point* tensors only: integer tensors are indices,
shapes, masks or already-quantized data, and a runtime keeps them as they are.
"""

import functools
import math
from collections.abc import Mapping

from onnx import TensorProto as T

from .errors import HwUtilError

# Bits per element. Sub-byte types are counted at their packed size.
_BITS = {
    T.FLOAT: 32, T.UINT8: 8, T.INT8: 8, T.UINT16: 16, T.INT16: 16, T.INT32: 32, T.INT64: 64,
    T.BOOL: 8, T.FLOAT16: 16, T.DOUBLE: 64, T.UINT32: 32, T.UINT64: 64, T.COMPLEX64: 64,
    T.COMPLEX128: 128, T.BFLOAT16: 16,
    # Strings have no fixed size; a pointer-sized slot is what a runtime stores per element.
    T.STRING: 64,
}
for _name, _bits in [
    ("FLOAT8E4M3FN", 8), ("FLOAT8E4M3FNUZ", 8), ("FLOAT8E5M2", 8), ("FLOAT8E5M2FNUZ", 8),
    ("FLOAT8E8M0", 8), ("UINT4", 4), ("INT4", 4), ("FLOAT4E2M1", 4), ("UINT2", 2), ("INT2", 2),
    ("FLOAT6E2M3", 6), ("FLOAT6E3M2", 6),
]:
    if hasattr(T, _name):  # older onnx releases lack the newest types
        _BITS[getattr(T, _name)] = _bits

FLOATING = {T.FLOAT, T.FLOAT16, T.DOUBLE, T.BFLOAT16} | {
    getattr(T, n) for n in ("FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ",
                            "FLOAT8E8M0", "FLOAT4E2M1", "FLOAT6E2M3", "FLOAT6E3M2") if hasattr(T, n)
}
# Types that hold learned values (float weights, or the integer payload of a quantized weight).
PARAM_TYPES = FLOATING | {T.INT8, T.UINT8} | {getattr(T, n) for n in ("INT4", "UINT4") if hasattr(T, n)}

PRECISIONS = {"model": None, "fp32": 32, "tf32": 32, "fp16": 16, "bf16": 16, "int8": 8, "fp8": 8}


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise HwUtilError(f"unknown --precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision


def element_bits(dtype: int, precision: str = "model") -> int:
    """Bits one element of `dtype` occupies when the model runs at `precision`."""
    bits = PRECISIONS[precision]
    if bits is not None and dtype in FLOATING:
        return bits
    # An undefined dtype (a tensor inference could not type) is priced as fp32, the common case.
    return _BITS.get(dtype, 32)


def nbytes(numel: int, dtype: int, precision: str = "model") -> int:
    return (numel * element_bits(dtype, precision) + 7) // 8


def tensor_nbytes(t, precision: str, stored: Mapping[str, float] | None = None) -> int:
    """Bytes of graph tensor `t` at `precision`, unless `stored` gives the bits its elements take in memory:
    a storage what-if (int4 weights with their group scales, an fp8 KV cache) that leaves the arithmetic at
    `precision`. Bits may be fractional: 4-bit weights with one 16-bit scale per 32 are 4.5 bits each."""
    bits = stored.get(t.name) if stored else None
    if bits is None:
        return nbytes(t.numel, t.dtype, precision)
    return math.ceil(t.numel * bits / 8)


@functools.cache
def dtype_name(dtype: int) -> str:
    try:
        return T.DataType.Name(dtype).lower()
    except ValueError:
        return f"dtype{dtype}"
