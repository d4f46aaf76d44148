"""Flavor-specific conversion of a downloaded MLflow model to ONNX bytes.

Each converter also returns a runner for the *source* model, so the parity gate compares the
ONNX result with what the original framework computes on the same inputs.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ExportFailedError, UnsupportedFlavorError
from .parity import Runner

SUPPORTED_FLAVORS = ("pytorch", "onnx", "sklearn")
DEFAULT_INPUT_NAME = "input"
DEFAULT_OUTPUT_NAME = "probabilities"


@dataclass
class Converted:
    flavor: str
    onnx_bytes: bytes
    source: Runner


def pick_flavor(flavors: dict) -> str:
    """The first flavor we can convert, in order of preference."""
    for flavor in SUPPORTED_FLAVORS:
        if flavor in flavors:
            return flavor
    shown = ", ".join(sorted(f for f in flavors if f != "python_function")) or "python_function only"
    raise UnsupportedFlavorError(
        f"unsupported flavor {shown}; supported: {', '.join(SUPPORTED_FLAVORS)}. "
        f"Log the model with mlflow.pytorch, mlflow.onnx or mlflow.sklearn"
    )


def convert(flavor: str, local_dir: Path, example: np.ndarray, *, opset: int, label: str) -> Converted:
    converters: dict[str, Callable[..., Converted]] = {
        "pytorch": _from_pytorch,
        "onnx": _from_onnx,
        "sklearn": _from_sklearn,
    }
    return converters[flavor](local_dir, example, opset=opset, label=label)


@contextlib.contextmanager
def _quiet_torch_onnx():
    """The dynamo exporter logs optional-dependency warnings that are noise for us."""
    names = ["torch.onnx", "torch.onnx._internal.exporter._registration", "torch._export", "torch.export"]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _flatten(out) -> list[np.ndarray]:
    import torch

    if isinstance(out, torch.Tensor):
        return [out.detach().cpu().numpy()]
    if isinstance(out, dict):
        out = list(out.values())
    return [t.detach().cpu().numpy() for t in out]


def _from_pytorch(local_dir: Path, example: np.ndarray, *, opset: int, label: str) -> Converted:
    """torch.onnx dynamo export with a dynamic batch axis; works on the fx GraphModule MLflow 3 returns."""
    import mlflow.pytorch
    import torch

    model = mlflow.pytorch.load_model(str(local_dir), map_location="cpu")
    if not isinstance(model, torch.fx.GraphModule):  # pickled nn.Module; pt2 modules refuse eval()
        model.eval()

    def source(x: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            return _flatten(model(torch.from_numpy(x)))

    trace_x = example if len(example) > 1 else np.concatenate([example, example])  # batch 1 would specialize
    n_outputs = len(source(trace_x[:2]))
    try:
        with _quiet_torch_onnx(), torch.no_grad(), warnings.catch_warnings():
            # pt2 GraphModules report training mode although they were exported in eval mode
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            program = torch.onnx.export(
                model,
                (torch.from_numpy(trace_x),),
                dynamo=True,
                opset_version=opset,
                verbose=False,
                input_names=[DEFAULT_INPUT_NAME],
                output_names=[DEFAULT_OUTPUT_NAME] if n_outputs == 1 else None,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                report=False,
            )
    except Exception as exc:  # noqa: BLE001 - any exporter failure is the same answer to the caller
        raise ExportFailedError(
            f"torch.onnx could not trace {label}: {type(exc).__name__}: {_first_line(exc)}. Make forward() "
            f"traceable by torch.export (no data-dependent Python control flow, tensor in/tensor out) "
            f"or log the model as an onnx flavor"
        ) from exc
    return Converted("pytorch", program.model_proto.SerializeToString(), source)


def _from_onnx(local_dir: Path, example: np.ndarray, *, opset: int, label: str) -> Converted:
    """Validated pass-through: checked, and the source runner is onnxruntime without graph optimizations."""
    import onnx

    from .runtime import session

    files = sorted(local_dir.rglob("*.onnx"))
    if not files:
        raise ExportFailedError(f"{label} has the onnx flavor but no .onnx file; re-log it with mlflow.onnx")
    try:
        proto = onnx.load(str(files[0]))
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # noqa: BLE001
        raise ExportFailedError(f"the ONNX file of {label} is invalid: {_first_line(exc)}; re-export it") from exc
    data = proto.SerializeToString()
    plain = session(data, optimize=False)
    return Converted("onnx", data, lambda x: plain.run(None, {plain.get_inputs()[0].name: x}))


def _from_sklearn(local_dir: Path, example: np.ndarray, *, opset: int, label: str) -> Converted:
    """skl2onnx for classifiers/regressors over one float matrix; probabilities as the output."""
    import mlflow.sklearn
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    model = mlflow.sklearn.load_model(str(local_dir))
    flat = example.reshape(len(example), -1)
    try:
        options = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
        proto = convert_sklearn(
            model,
            initial_types=[(DEFAULT_INPUT_NAME, FloatTensorType([None, flat.shape[1]]))],
            target_opset={"": opset, "ai.onnx.ml": 3},
            options=options,
        )
    except Exception as exc:  # noqa: BLE001
        raise ExportFailedError(f"skl2onnx could not convert {label}: {_first_line(exc)}") from exc
    if hasattr(model, "predict_proba"):
        keep = [o.name for o in proto.graph.output if "prob" in o.name]
        _keep_outputs(proto, keep, DEFAULT_OUTPUT_NAME)

        def source(x: np.ndarray) -> list[np.ndarray]:
            return [model.predict_proba(x.reshape(len(x), -1)).astype(np.float32)]
    else:

        def source(x: np.ndarray) -> list[np.ndarray]:
            return [np.asarray(model.predict(x.reshape(len(x), -1)), dtype=np.float32).reshape(len(x), -1)]

    return Converted("sklearn", proto.SerializeToString(), source)


def _keep_outputs(proto, keep: list[str], rename_to: str) -> None:
    """Drop skl2onnx's label output and name the probability output like our torch models."""
    from onnx import helper

    for out in list(proto.graph.output):
        if out.name not in keep:
            proto.graph.output.remove(out)
    if len(keep) == 1 and keep[0] != rename_to:
        old = keep[0]
        proto.graph.node.append(helper.make_node("Identity", [old], [rename_to]))
        proto.graph.output[0].name = rename_to


def _first_line(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
