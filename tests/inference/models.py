"""Small real ONNX models built with onnx.helper (fast, no torch), plus numpy references for them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FEATURES, HIDDEN, CLASSES = 4, 8, 3


def mlp_weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w1": rng.normal(size=(FEATURES, HIDDEN)).astype(np.float32),
        "b1": rng.normal(size=HIDDEN).astype(np.float32),
        "w2": rng.normal(size=(HIDDEN, CLASSES)).astype(np.float32),
        "b2": rng.normal(size=CLASSES).astype(np.float32),
    }


def mlp_reference(x: np.ndarray, seed: int = 0) -> np.ndarray:
    w = mlp_weights(seed)
    h = np.maximum(x @ w["w1"] + w["b1"], 0)
    z = h @ w["w2"] + w["b2"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def assert_mlp_answers(probabilities, x: np.ndarray) -> None:
    """The MLP's answers for `x` are its numpy reference. With an atol as well as an rtol:
    onnxruntime's float32 kernels (which vary with the batch's size) differ from numpy's by
    ~1e-16 absolute, a relative 1e-5 on probabilities near 1e-11."""
    np.testing.assert_allclose(probabilities, mlp_reference(x), rtol=1e-5, atol=1e-7)


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _model(nodes, inputs, outputs, initializers, name: str) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def mlp(path: Path, seed: int = 0, batch: str | int = "batch") -> Path:
    """The exporter's contract in small: float32 `input` [batch, 4] -> softmax `probabilities` [batch, 3]."""
    w = mlp_weights(seed)
    inits = [numpy_helper.from_array(v, k) for k, v in w.items()]
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["z0"]),
        helper.make_node("Add", ["z0", "b2"], ["z1"]),
        helper.make_node("Softmax", ["z1"], ["probabilities"], axis=1),
    ]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, FEATURES])]
    outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [batch, CLASSES])]
    return save(_model(nodes, inputs, outputs, inits, "mlp"), path)


def lookup(path: Path, rows: int = 5) -> Path:
    """int64 `index` [batch] -> `value` [batch, 2] by Gather: an out-of-range index makes onnxruntime
    fail on well-formed input."""
    table = np.arange(rows * 2, dtype=np.float32).reshape(rows, 2)
    nodes = [helper.make_node("Gather", ["table", "index"], ["value"], axis=0)]
    inputs = [helper.make_tensor_value_info("index", TensorProto.INT64, ["batch"])]
    outputs = [helper.make_tensor_value_info("value", TensorProto.FLOAT, ["batch", 2])]
    return save(_model(nodes, inputs, outputs, [numpy_helper.from_array(table, "table")], "lookup"), path)


def two_inputs(path: Path) -> Path:
    """`a` [batch, 2] + `b` [batch, 2] -> `sum` and `product`: several inputs and outputs."""
    nodes = [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Mul", ["a", "b"], ["product"])]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 2]) for n in ("a", "b")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 2]) for n in ("sum", "product")]
    return save(_model(nodes, inputs, outputs, [], "two_inputs"), path)


def slow(path: Path, width: int = 512, depth: int = 100) -> Path:
    """float32 `input` [batch, 4] -> `output` [batch, 4] through `depth` width x width matmuls: about
    25 M multiply-adds per row, so requests stay in flight long enough to signal the server meanwhile.
    The result is the input again (the weights are scaled identity blocks)."""
    up = np.zeros((FEATURES, width), np.float32)
    up[:, :FEATURES] = np.eye(FEATURES)
    square = np.eye(width, dtype=np.float32)
    down = up.T.copy()
    inits = [numpy_helper.from_array(up, "up"), numpy_helper.from_array(square, "square"),
             numpy_helper.from_array(down, "down")]
    nodes = [helper.make_node("MatMul", ["input", "up"], ["h0"])]
    for i in range(depth):
        nodes.append(helper.make_node("MatMul", [f"h{i}", "square"], [f"h{i + 1}"]))
    nodes.append(helper.make_node("MatMul", [f"h{depth}", "down"], ["output"]))
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", FEATURES])]
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", FEATURES])]
    return save(_model(nodes, inputs, outputs, inits, "slow"), path)


def slow_payloads(count: int = 8, rows: int = 1024) -> list[np.ndarray]:
    """`count` inputs for `slow`, the i-th all i (its answer is itself again): 1,024 rows is ~0.3 s of
    compute each, seconds for eight, so on a loaded machine none ends before several are seen in flight."""
    return [np.full((rows, FEATURES), i, np.float32) for i in range(count)]


# Every v2 datatype and the ONNX element type that carries it.
V2_TO_ONNX = {
    "BOOL": TensorProto.BOOL, "UINT8": TensorProto.UINT8, "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32, "UINT64": TensorProto.UINT64, "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16, "INT32": TensorProto.INT32, "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16, "FP32": TensorProto.FLOAT, "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}


# Every datatype but FP16, which has no typed gRPC contents field: a model of only these can take every
# input as typed contents too.
TYPED_DATATYPES = tuple(t for t in V2_TO_ONNX if t != "FP16")


def all_types(path: Path, width: int = 2, datatypes: tuple[str, ...] = tuple(V2_TO_ONNX)) -> Path:
    """One input per v2 datatype, named after it in lower case (`bool`, `uint8`, …, `bytes`), each of
    shape [batch, width] and passed through Identity to `<name>_out`: every answer is exactly what was
    sent, so a round trip proves both directions of every encoding."""
    names = [t.lower() for t in datatypes]
    nodes = [helper.make_node("Identity", [n], [f"{n}_out"]) for n in names]
    inputs = [helper.make_tensor_value_info(n, V2_TO_ONNX[t], ["batch", width])
              for n, t in zip(names, datatypes, strict=True)]
    outputs = [helper.make_tensor_value_info(f"{n}_out", V2_TO_ONNX[t], ["batch", width])
               for n, t in zip(names, datatypes, strict=True)]
    return save(_model(nodes, inputs, outputs, [], "all_types"), path)


def all_types_rows(rows: int, seed: int = 0, datatypes: tuple[str, ...] = tuple(V2_TO_ONNX)) -> dict[str, np.ndarray]:
    """Inputs for `all_types`, by input name: `rows` rows of `sample` values of each datatype."""
    return {t.lower(): sample(t, rows, seed=seed) for t in datatypes}


def identity(path: Path, datatype: str = "FP32", width: int = 2) -> Path:
    """`input` [batch, width] of `datatype` -> `output`, unchanged: answers hold whatever was sent (NaN,
    infinities, any string)."""
    onnx_type = V2_TO_ONNX[datatype]
    nodes = [helper.make_node("Identity", ["input"], ["output"])]
    inputs = [helper.make_tensor_value_info("input", onnx_type, ["batch", width])]
    outputs = [helper.make_tensor_value_info("output", onnx_type, ["batch", width])]
    return save(_model(nodes, inputs, outputs, [], "identity"), path)


def sample(datatype: str, rows: int, width: int = 2, seed: int = 0) -> np.ndarray:
    """Values of `datatype` that use its whole range (extremes, negatives, non-ASCII text)."""
    rng = np.random.default_rng(seed)
    shape = (rows, width)
    if datatype == "BYTES":
        words = np.array(["", "a", "héllo", "日本", "x" * 40, "tab\there"], dtype=object)
        return rng.choice(words, size=shape)
    if datatype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(bool)
    dtype = np.dtype({"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}.get(datatype)
                     or datatype.lower())
    if dtype.kind == "f":
        return (rng.normal(size=shape) * 100).astype(dtype)
    info = np.iinfo(dtype)
    values = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    values.flat[0] = info.min
    values.flat[-1] = info.max
    return values


def quantized_mlp(path: Path, seed: int = 0) -> Path:
    """`mlp` through onnxruntime's dynamic int8 quantization, as `spec.export.quantize: dynamic-int8`
    exports: each MatMul's input is quantized with a scale computed over the whole tensor at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    plain = mlp(path.with_name(f"{path.stem}-float.onnx"), seed)
    quantize_dynamic(str(plain), str(path), weight_type=QuantType.QInt8)
    return path
