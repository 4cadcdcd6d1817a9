"""The report's views format numbers with the package's one set of helpers (`onnx_hwutil.units`)."""

from ..units import ms, not_costed, parse_bytes, pct, si, size

__all__ = ["ms", "not_costed", "parse_bytes", "pct", "si", "size"]
