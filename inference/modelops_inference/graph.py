"""What an ONNX graph is made of, read from the model file's protobuf wire format.

The serving image has onnxruntime but not the `onnx` package, and onnxruntime does not list a
session's operators; the few fields needed here (node op types, subgraphs, local functions) are read
directly, skipping everything else (weights included) without decoding it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

# Operators whose answer for one row depends on the other rows of the same run: dynamic quantization
# computes one scale and zero point over the whole input tensor (DynamicQuantizeLinear, and the fused
# contrib ops onnxruntime's quantizer may emit), so merging requests would let clients change each
# other's answers.
CROSS_ROW_OPS = frozenset({
    "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
})

# onnx.proto field numbers
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODE = 1
_NODE_OP_TYPE, _NODE_ATTRIBUTE = 4, 5
_ATTRIBUTE_GRAPH, _ATTRIBUTE_GRAPHS = 6, 11
_FUNCTION_NODE = 7
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, memoryview | None]]:
    """(field number, bytes) of each field of one message; None for the bytes of non-length fields."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            _, pos = _varint(buf, pos)
            yield number, None
        elif wire == _FIXED64:
            pos += 8
            yield number, None
        elif wire == _FIXED32:
            pos += 4
            yield number, None
        elif wire == _BYTES:
            size, pos = _varint(buf, pos)
            yield number, buf[pos:pos + size]
            pos += size
        else:
            raise ValueError(f"not an ONNX model: unsupported protobuf wire type {wire}")


def _graph_ops(graph: memoryview, node_field: int, ops: set[str]) -> None:
    for number, value in _fields(graph):
        if number == node_field and value is not None:
            _node_ops(value, ops)


def _node_ops(node: memoryview, ops: set[str]) -> None:
    for number, value in _fields(node):
        if number == _NODE_OP_TYPE and value is not None:
            ops.add(bytes(value).decode())
        elif number == _NODE_ATTRIBUTE and value is not None:
            for attr_number, attr_value in _fields(value):  # If/Loop/Scan bodies
                if attr_number in (_ATTRIBUTE_GRAPH, _ATTRIBUTE_GRAPHS) and attr_value is not None:
                    _graph_ops(attr_value, _GRAPH_NODE, ops)


def op_types(model: bytes) -> set[str]:
    """Every operator type in the model: its graph, subgraphs and local functions."""
    ops: set[str] = set()
    for number, value in _fields(memoryview(model)):
        if number == _MODEL_GRAPH and value is not None:
            _graph_ops(value, _GRAPH_NODE, ops)
        elif number == _MODEL_FUNCTIONS and value is not None:
            _graph_ops(value, _FUNCTION_NODE, ops)
    return ops


def cross_row_ops(path: Path) -> set[str]:
    """The operators in the model at `path` that tie each row's answer to the rest of its batch."""
    return op_types(path.read_bytes()) & CROSS_ROW_OPS
