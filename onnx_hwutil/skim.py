"""An .onnx file's bytes without its large weight payloads, cut out at the protobuf wire level before parsing.

Protobuf parses a message whole: a 440 MB BERT with its weights inline costs a full copy of every weight
just to be told their dims, which is all the analyzer needs (loader.py drops the payloads right after).
Walking the wire format instead, the top-level graph's initializers and Constant nodes are rebuilt without
the data fields of any tensor over SMALL elements, and everything else is copied through untouched. Anything
unexpected (a malformed varint, a length past the end) returns None and the caller parses the file as it is,
so errors are still reported by protobuf, in loader.py's words.
"""

from __future__ import annotations

import math

# ModelProto.graph; GraphProto.node, .initializer; NodeProto.attribute; AttributeProto.t; TensorProto.dims
_GRAPH, _NODE, _INIT, _ATTR, _ATTR_T, _DIMS = 7, 1, 5, 5, 5, 1
# TensorProto's data fields: float, int32, string, int64, raw, double, uint64
_PAYLOAD = {4, 5, 6, 7, 9, 10, 11}
# A node under this many bytes holds no tensor worth skipping: copied through without a look inside.
_SMALL_NODE_BYTES = 4096


class _Malformed(Exception):
    pass


def skim(buf: bytes | memoryview, small: int) -> bytes | None:
    """`buf` (a serialized ModelProto) with the payloads of top-level tensors over `small` elements
    removed, or None where the bytes are not what a ModelProto looks like (let protobuf say why)."""
    try:
        return bytes(_message(memoryview(buf), {_GRAPH: lambda b: _graph(b, small)}))
    except (_Malformed, IndexError, ValueError):
        return None


def _graph(buf: memoryview, small: int) -> memoryview | bytearray:
    return _message(buf, {_INIT: lambda b: _tensor(b, small),
                          _NODE: lambda b: b if len(b) < _SMALL_NODE_BYTES else _node(b, small)})


def _node(buf: memoryview, small: int) -> memoryview | bytearray:
    return _message(buf, {_ATTR: lambda b: _message(b, {_ATTR_T: lambda t: _tensor(t, small)})})


def _tensor(buf: memoryview, small: int) -> memoryview | bytearray:
    dims = []
    for field, wire, _key, start, end in _fields(buf):
        if field == _DIMS:
            if wire == 2:  # packed
                pos = start
                while pos < end:
                    v, pos = _varint(buf, pos)
                    dims.append(v)
            elif wire == 0:
                dims.append(_varint(buf, start)[0])
    if math.prod(dims) <= small:
        return buf
    out = bytearray()
    for field, _wire, key, _start, end in _fields(buf):
        if field not in _PAYLOAD:
            out += buf[key:end]
    return out


def _message(buf: memoryview, rebuild: dict) -> memoryview | bytearray:
    """Copy `buf` field by field; a length-delimited field with a handler is replaced by its result. Runs
    of fields that come back unchanged (a handler returns the very view it was given) are copied in one
    piece: a graph of small nodes is copied whole."""
    out = bytearray()
    kept = 0  # buf[kept:key] is still to be copied as it is
    for field, wire, key, start, end in _fields(buf):
        fn = rebuild.get(field) if wire == 2 else None
        if fn is None:
            continue
        view = buf[start:end]
        body = fn(view)
        if body is view:
            continue
        out += buf[kept:key]
        out += _encode_varint((field << 3) | 2)
        out += _encode_varint(len(body))
        out += body
        kept = end
    if not kept:  # nothing replaced: the view itself, so that the caller copies it with its neighbours
        return buf
    out += buf[kept:]
    return out


def _fields(buf: memoryview):
    """(field number, wire type, key start, value start, end) of each field of a message."""
    pos, n = 0, len(buf)
    while pos < n:
        key_start = pos
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            start, end = pos, _varint(buf, pos)[1]
        elif wire == 1:
            start, end = pos, pos + 8
        elif wire == 2:
            length, start = _varint(buf, pos)
            end = start + length
        elif wire == 5:
            start, end = pos, pos + 4
        else:
            raise _Malformed(f"wire type {wire}")
        if end > n or field == 0:
            raise _Malformed("field past the end")
        pos = end
        yield field, wire, key_start, start, end


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _Malformed("varint too long")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)
