"""onnxruntime sessions and the Open Inference Protocol view of a model's inputs and outputs."""

from __future__ import annotations

from modelops_registry.record import TensorInfo

__all__ = ["OIP_DATATYPES", "TensorInfo", "describe", "runner", "session"]

# onnxruntime element types -> Open Inference Protocol v2 datatypes.
OIP_DATATYPES = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(float16)": "FP16",
    "tensor(int64)": "INT64",
    "tensor(int32)": "INT32",
    "tensor(int16)": "INT16",
    "tensor(int8)": "INT8",
    "tensor(uint8)": "UINT8",
    "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
}


def session(model: bytes | str, *, optimize: bool = True, threads: int = 1):
    """A CPU session; ``optimize`` toggles ORT's full graph optimizations (what servers run)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def runner(sess):
    """A parity Runner over a single-input session."""
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})


def describe(args) -> list[TensorInfo]:
    return [
        TensorInfo(
            a.name, OIP_DATATYPES.get(a.type, a.type), [d if isinstance(d, int) and d >= 0 else -1 for d in a.shape]
        )
        for a in args
    ]
