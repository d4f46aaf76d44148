"""The model runtime: fetch an ONNX model by path or MLflow URI, verify its sha256, open an
onnxruntime session, describe its inputs and outputs, and prove it runs with a warm-up inference.

Knows nothing about HTTP. The server asks `state` and `reason` to answer readiness, and `run`
to infer.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from modelops_inference.config import ServerConfig
from modelops_inference.errors import ModelLoadError, ModelNotReady
from modelops_inference.graph import cross_row_ops
from modelops_inference.protocol import TensorSpec
from modelops_registry import client as registry
from modelops_registry.errors import PERMANENT_CODES
from modelops_registry.redact import redact_text
from modelops_registry.reference import FILENAME as REFERENCE_FILE

log = logging.getLogger(__name__)

PLATFORM = "onnxruntime_onnx"
MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/", "s3://", "gs://", "wasbs://", "hdfs://",
                  "dbfs:/", "http://", "https://")
# MLflow error codes that no retry can fix (a wrong name, version or alias; no permission): the
# registry component's table, shared with the operator and the exporter.
PERMANENT_MLFLOW_ERRORS = PERMANENT_CODES

# onnxruntime's tensor type names and the v2 datatype names they map to.
ORT_TO_V2 = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


class ModelState(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_onnx_file(path: Path) -> Path:
    """The .onnx file at `path`: the file itself, `model.onnx` in a directory (MLflow's onnx flavor),
    or the only .onnx file below it."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise ModelLoadError(f"model path {str(path)!r} does not exist")
    if (path / "model.onnx").is_file():
        return path / "model.onnx"
    found = sorted(path.rglob("*.onnx"))
    if len(found) != 1:
        names = [str(p.relative_to(path)) for p in found]
        raise ModelLoadError(f"expected exactly one .onnx file under {str(path)!r}, found {names}")
    return found[0]


def spec_of(node) -> TensorSpec:
    """A session input or output as a TensorSpec; symbolic or unknown dimensions become -1."""
    datatype = ORT_TO_V2.get(node.type)
    if datatype is None:
        raise ModelLoadError(f"tensor '{node.name}' has type {node.type}, which the v2 protocol cannot carry")
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in node.shape)
    return TensorSpec(node.name, datatype, shape)


def example_inputs(specs: list[TensorSpec], rows: int = 1) -> dict[str, np.ndarray]:
    """Zero-filled inputs with `rows` in every free dimension: what the warm-up runs."""
    out = {}
    for s in specs:
        shape = tuple(rows if d == -1 else d for d in s.shape)
        out[s.name] = np.full(shape, "", dtype=object) if s.datatype == "BYTES" else np.zeros(shape, s.dtype)
    return out


class ModelRuntime:
    """One ONNX model in one onnxruntime session, loaded in the background by `load()`."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.name = config.model_name
        self.version = config.model_version
        self.state = ModelState.LOADING
        self.reason = "model is loading"
        self.sha256 = ""
        self.load_seconds = 0.0
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        self.cross_row_ops: set[str] = set()
        self.session: ort.InferenceSession | None = None
        # The drift reference found for the model (`drift.py`), or None and why not (`reference_note`).
        self.reference_path: Path | None = None
        self.reference_note = ""
        self._output_names: list[str] = []
        self._download_dir = ""
        self._done = threading.Event()

    @property
    def ready(self) -> bool:
        return self.state is ModelState.READY

    @property
    def batchable(self) -> bool:
        """Requests can be stacked along the first dimension when every input and output has it free."""
        return all(s.batched for s in self.inputs + self.outputs)

    @property
    def unbatchable_reason(self) -> str | None:
        """Why concurrent requests must not share a run, or None when they may."""
        if not self.batchable:
            return "the model's first dimension is not free in every input and output"
        if self.cross_row_ops:
            return (f"the graph has {', '.join(sorted(self.cross_row_ops))}, which computes over the whole batch "
                    "(dynamic quantization scales), so one request's rows would change another's answers")
        return None

    def wait_loaded(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def load(self) -> None:
        """Fetch, verify, open and warm up; on any failure record why and stay unready (never raises)."""
        started = time.perf_counter()
        try:
            path = self._fetch()
            self._verify(path)
            self._open(path)
            self._warm_up()
            self.reference_path, self.reference_note = self._locate_reference(path)
        except Exception as e:  # noqa: BLE001 - every failure must leave the server live and say why
            self.state = ModelState.FAILED
            self.reason = f"model failed to load: {e}"
            log.error("model load failed", extra={"event": "model_load_failed", "model_name": self.name,
                                                  "model_version": self.version, "error": str(e),
                                                  "model_uri": self.config.model_uri})
        else:
            self.load_seconds = time.perf_counter() - started
            self.state = ModelState.READY
            self.reason = ""
            log.info("model ready", extra={"event": "model_ready", "model_name": self.name,
                                           "model_version": self.version, "sha256": self.sha256,
                                           "load_seconds": round(self.load_seconds, 3),
                                           "inputs": [s.metadata() for s in self.inputs],
                                           "outputs": [s.metadata() for s in self.outputs]})
        finally:
            self._done.set()

    def _fetch(self) -> Path:
        uri = self.config.model_uri
        if uri.startswith("file://"):
            uri = uri[len("file://"):]
        if not uri.startswith(MLFLOW_SCHEMES):
            return find_onnx_file(Path(uri))
        target = self._download_dir = self.config.model_dir or tempfile.mkdtemp(prefix="modelops-model-")
        os.makedirs(target, exist_ok=True)
        attempts = max(1, self.config.load_attempts)
        for attempt in range(1, attempts + 1):
            try:
                return find_onnx_file(Path(_download(uri, target)))
            except ModelLoadError:
                raise
            except Exception as e:  # noqa: BLE001 - MLflow raises many types for network trouble
                if attempt == attempts or getattr(e, "error_code", "") in PERMANENT_MLFLOW_ERRORS:
                    raise ModelLoadError(f"cannot download {uri}: {redact_text(str(e))}") from e
                log.warning("model download failed, retrying",
                            extra={"event": "model_download_retry", "attempt": attempt,
                                   "error": redact_text(str(e))})
                time.sleep(min(2**attempt, 10))
        raise AssertionError("unreachable")

    def _locate_reference(self, model: Path) -> tuple[Path | None, str]:
        """`--reference` when given, else reference.json beside the model file: in its folder (a local
        path, or a downloaded MLflow folder), else the artifact beside a remote file URI (the operator
        passes the export's `runs:/<run>/onnx/<...>/model.onnx`). Never raises: a monitoring file must not
        fail the load; why none was found is the note."""
        uri = self.config.reference
        if not uri:
            if (model.parent / REFERENCE_FILE).is_file():
                return model.parent / REFERENCE_FILE, str(model.parent / REFERENCE_FILE)
            model_uri = self.config.model_uri.removeprefix("file://").rstrip("/")
            if not (model_uri.startswith(MLFLOW_SCHEMES) and model_uri.endswith(".onnx")):
                return None, f"no {REFERENCE_FILE} beside {model} and no --reference"
            uri = model_uri.rsplit("/", 1)[0] + "/" + REFERENCE_FILE
        try:
            path = self._fetch_reference(uri)
        except Exception as e:  # noqa: BLE001 - MLflow raises many types for a missing artifact
            why = redact_text(str(e)).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            return None, f"cannot fetch {uri}: {why}"
        return (path, uri) if path.is_file() else (None, f"{uri} is not a file")

    def _fetch_reference(self, uri: str) -> Path:
        """A local path as is; an MLflow URI downloaded (once: the model just came from the same server)."""
        uri = uri.removeprefix("file://")
        if not uri.startswith(MLFLOW_SCHEMES):
            return Path(uri)
        return Path(_download(uri, tempfile.mkdtemp(prefix="reference-", dir=self._download_dir or None)))

    def _verify(self, path: Path) -> None:
        self.sha256 = sha256_file(path)
        want = self.config.model_sha256
        if want and want != self.sha256:
            raise ModelLoadError(f"sha256 mismatch for {path.name}: expected {want}, got {self.sha256}")

    def _open(self, path: Path) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.config.intra_op_threads
        options.inter_op_num_threads = self.config.inter_op_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning worker threads steal the core the event loop needs between small runs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # onnxruntime logs in its own plain-text format on stderr: keep only its errors there.
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own unexported types
            raise ModelLoadError(f"onnxruntime cannot open {path.name}: {e}") from e
        self.inputs = [spec_of(n) for n in self.session.get_inputs()]
        self.outputs = [spec_of(n) for n in self.session.get_outputs()]
        self._output_names = [s.name for s in self.outputs]
        try:
            self.cross_row_ops = cross_row_ops(path)
        except (ValueError, IndexError, UnicodeDecodeError) as e:  # onnxruntime read it: never fail the load
            self.cross_row_ops = {f"an unreadable graph ({e})"}

    def _warm_up(self) -> None:
        rows = 2 if self.batchable else 1
        results = self.run(example_inputs(self.inputs, rows))
        for spec in self.outputs:
            got = results[spec.name]
            if self.batchable and got.shape[0] != rows:
                raise ModelLoadError(f"warm-up: output '{spec.name}' has {got.shape[0]} rows for {rows} "
                                     "input rows, so batches cannot be split per request")

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One `session.run`; thread-safe, releases the GIL while onnxruntime computes."""
        if self.session is None:
            raise ModelNotReady(self.reason or "model is not loaded")
        values = self.session.run(self._output_names, inputs)
        return dict(zip(self._output_names, values, strict=True))

    def close(self) -> None:
        self.session = None


def _download(uri: str, target: str) -> str:
    # The registry client applies the project's one set of MLflow HTTP retry/timeout settings; mlflow
    # itself is imported on first use (remote URIs only: it takes a second to import).
    return registry.download_artifacts(uri, target)
