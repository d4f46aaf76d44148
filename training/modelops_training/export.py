"""Export a registered MLflow model version to ONNX behind a parity gate.

``export_model`` is the library entry point the operator calls; ``modelops-export`` wraps it.
It resolves the URI to a concrete version, reuses an existing complete export with the same
settings, else converts, gates on parity (plain ONNX, ORT-optimized, and int8 if asked),
writes ``model.onnx`` then ``export.json`` and uploads them in that order to the version's run
under ``onnx/opset<N>-<quantize>-<hash>/``. ``export.json`` is the completion marker: it is
written last and carries the ONNX file's sha256, so a half-finished export never looks valid.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

from . import parity as gate
from .convert import convert, pick_flavor
from .errors import ExportFailedError, ModelopsError, ParityError
from .mlflow_client import call_with_retries, check_reachable, client, first_line, resolve_tracking_uri
from .parity import ParityResult
from .resolve import ResolvedVersion, resolve_version
from .runtime import TensorInfo, describe, runner, session

Quantize = Literal["none", "dynamic-int8"]
QUANTIZE_MODES = ("none", "dynamic-int8")
DEFAULT_OPSET = 18
DEFAULT_TOLERANCE = 1e-4
DEFAULT_INT8_TOLERANCE = 0.1
DEFAULT_SAMPLES = 64
SCHEMA_VERSION = 1


@dataclass
class ParityReport:
    """The fp32 gate (worst of plain and ORT-optimized sessions) plus the int8 gate when asked.

    Top-level numbers are the fp32 model's; ``stages`` breaks them down; ``int8`` has its own,
    looser tolerance and decides for the quantized model that is actually shipped.
    """

    max_abs_error: float
    max_rel_error: float
    tolerance: float
    samples: int
    passed: bool
    top1_agreement: float | None = None
    stages: dict[str, ParityResult] = field(default_factory=dict)
    int8: ParityResult | None = None

    @classmethod
    def from_stages(cls, stages: dict[str, ParityResult]) -> ParityReport:
        worst = max(stages.values(), key=lambda r: r.max_abs_error)
        agreements = [r.top1_agreement for r in stages.values() if r.top1_agreement is not None]
        return cls(
            worst.max_abs_error,
            max(r.max_rel_error for r in stages.values()),
            worst.tolerance,
            worst.samples,
            all(r.passed for r in stages.values()),
            min(agreements) if agreements else None,
            dict(stages),
        )

    @classmethod
    def from_dict(cls, d: dict) -> ParityReport:
        return cls(
            d["max_abs_error"],
            d["max_rel_error"],
            d["tolerance"],
            d["samples"],
            d["passed"],
            d.get("top1_agreement"),
            {k: ParityResult(**v) for k, v in d.get("stages", {}).items()},
            ParityResult(**d["int8"]) if d.get("int8") else None,
        )


@dataclass
class ExportRecord:
    """What an export produced, as written to ``export.json`` (plus ``reused``/``source_uri``)."""

    source_uri: str  # what the caller asked for (may be an alias)
    name: str
    version: str
    model_uri: str  # models:/NAME/VERSION, the concrete version
    run_id: str
    flavor: str
    artifact_path: str  # onnx/opset18-none-<hash>
    onnx_uri: str  # runs:/<run_id>/<artifact_path>/model.onnx
    export_json_uri: str
    sha256: str
    size_bytes: int
    opset: int
    quantize: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    parity: ParityReport
    input_example: list
    example_outputs: dict[str, list]
    versions: dict[str, str]
    settings_hash: str
    created_at: str
    export_seconds: float
    alias: str | None = None
    reused: bool = False
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=True)

    @classmethod
    def from_dict(cls, d: dict) -> ExportRecord:
        d = dict(d)
        d["inputs"] = [TensorInfo(**t) for t in d["inputs"]]
        d["outputs"] = [TensorInfo(**t) for t in d["outputs"]]
        d["parity"] = ParityReport.from_dict(d["parity"])
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("modelops-training", "torch", "onnx", "onnxruntime", "onnxscript", "mlflow", "numpy", "skl2onnx"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def settings_hash(mv: ResolvedVersion, **settings) -> str:
    """Same source version + same settings + same converter versions -> same hash -> reuse."""
    versions = library_versions()
    key = {
        "name": mv.name,
        "version": mv.version,
        "source": mv.source,
        **settings,
        "converters": {k: versions[k] for k in ("torch", "onnx", "onnxscript", "onnxruntime", "skl2onnx")},
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def export_model(
    model_uri: str,
    *,
    tracking_uri: str | None = None,
    opset: int = DEFAULT_OPSET,
    quantize: Quantize = "none",
    tolerance: float = DEFAULT_TOLERANCE,
    int8_tolerance: float = DEFAULT_INT8_TOLERANCE,
    samples: int = DEFAULT_SAMPLES,
    out_dir: str | os.PathLike | None = None,
    force: bool = False,
    progress: bool = False,
) -> ExportRecord:
    """Export ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` to ONNX; returns the record.

    Raises a subclass of ``modelops_training.errors.ExportError`` on any failure. ``out_dir``
    keeps local copies of ``model.onnx``/``export.json``; ``force`` re-exports even when a
    complete export with the same settings exists. Does not touch MLflow's global state.
    """
    settings = dict(
        tracking_uri=tracking_uri,
        opset=opset,
        quantize=quantize,
        tolerance=tolerance,
        int8_tolerance=int8_tolerance,
        samples=samples,
        out_dir=out_dir,
        force=force,
        progress=progress,
    )
    try:
        return _export(model_uri, **settings)
    except ModelopsError:
        raise
    except Exception as exc:  # the operator must only ever see our hierarchy, with advice
        raise ExportFailedError(
            f"export of {model_uri} failed unexpectedly: {type(exc).__name__}: {first_line(exc)}; "
            f"retry, and if it persists run `modelops-export {model_uri} --out DIR -v` to see details"
        ) from exc


def _export(
    model_uri: str,
    *,
    tracking_uri: str | None,
    opset: int,
    quantize: str,
    tolerance: float,
    int8_tolerance: float,
    samples: int,
    out_dir: str | os.PathLike | None,
    force: bool,
    progress: bool,
) -> ExportRecord:
    if quantize not in QUANTIZE_MODES:
        raise ExportFailedError(f"unknown quantize mode {quantize!r}; choose one of {', '.join(QUANTIZE_MODES)}")
    steps = _Steps(progress)  # also the export's clock
    tracking_uri = resolve_tracking_uri(tracking_uri)
    steps("connect")
    check_reachable(tracking_uri)
    steps("resolve")
    mv = resolve_version(model_uri, tracking_uri)
    run_id = _export_run(mv, tracking_uri)
    digest = settings_hash(
        mv, opset=opset, quantize=quantize, tolerance=tolerance, int8_tolerance=int8_tolerance, samples=samples
    )
    artifact_path = f"onnx/opset{opset}-{quantize}-{digest}"

    with tempfile.TemporaryDirectory(prefix="modelops-export-") as tmp:
        work = Path(out_dir) if out_dir else Path(tmp) / "out"
        work.mkdir(parents=True, exist_ok=True)
        if not force:
            steps("look for an existing export")
            existing = _existing_export(run_id, artifact_path, tracking_uri, Path(tmp) / "existing")
            if existing:
                record, onnx_file = existing
                if out_dir:
                    _publish_local(work, onnx_file.read_bytes(), record)
                record.source_uri, record.alias, record.reused = model_uri, mv.alias, True
                steps.done()
                return record
        steps("download model")
        local = _download_model(mv, tracking_uri, Path(tmp) / "model")
        record, onnx_bytes = _convert_and_gate(
            mv,
            local,
            steps,
            model_uri=model_uri,
            run_id=run_id,
            artifact_path=artifact_path,
            digest=digest,
            opset=opset,
            quantize=quantize,
            tolerance=tolerance,
            int8_tolerance=int8_tolerance,
            samples=samples,
        )
        record.export_seconds = round(steps.elapsed(), 3)
        steps("write and upload")
        _publish_local(work, onnx_bytes, record)
        _upload(work, run_id, artifact_path, tracking_uri)
    steps.done()
    return record


def _convert_and_gate(
    mv: ResolvedVersion,
    local: Path,
    steps,
    *,
    model_uri: str,
    run_id: str,
    artifact_path: str,
    digest: str,
    opset: int,
    quantize: str,
    tolerance: float,
    int8_tolerance: float,
    samples: int,
) -> tuple[ExportRecord, bytes]:
    from mlflow.models import Model

    mlmodel = Model.load(str(local))
    flavor = pick_flavor(mlmodel.flavors)
    example = _input_example(mlmodel, local, mv)
    label = f"{mv.uri} ({flavor})"
    steps(f"convert {flavor}")
    converted = convert(flavor, local, example, opset=opset, label=label)
    inputs = gate.parity_inputs(example, samples)

    steps("parity gate")
    stages = {}
    for stage, optimize in (("onnx", False), ("ort_optimized", True)):
        stages[stage] = gate.check(
            converted.source, runner(session(converted.onnx_bytes, optimize=optimize)), inputs, tolerance
        )
    report = ParityReport.from_stages(stages)
    if not report.passed:
        bad = next(k for k, r in stages.items() if not r.passed)
        raise ParityError(
            f"parity gate failed for {label} ({bad}): {stages[bad].describe()}; the ONNX model "
            f"does not compute what the source does. Check for unsupported ops or raise "
            f"--tolerance if the difference is acceptable",
            report,
        )
    served = converted.onnx_bytes
    if quantize == "dynamic-int8":
        steps("quantize int8")
        served = _quantize_dynamic(converted.onnx_bytes)
        report.int8 = gate.check(converted.source, runner(session(served)), inputs, int8_tolerance)
        if not report.int8.passed:
            raise ParityError(
                f"int8 parity gate failed for {label}: {report.int8.describe()}; quantization "
                f"changes the outputs too much. Export without --quantize or raise "
                f"--int8-tolerance",
                report,
            )

    sess = session(served)
    # Row by row, as smoke checks send them: dynamic int8 quantizes activations with a scale taken
    # from the whole batch, so a row's answer depends on the batch it came in.
    feed = sess.get_inputs()[0].name
    rows = [sess.run(None, {feed: example[i : i + 1]}) for i in range(len(example))]
    outputs = [np.concatenate([row[k] for row in rows]) for k in range(len(sess.get_outputs()))]
    record = ExportRecord(
        source_uri=model_uri,
        name=mv.name,
        version=mv.version,
        model_uri=mv.uri,
        run_id=run_id,
        flavor=flavor,
        artifact_path=artifact_path,
        onnx_uri=f"runs:/{run_id}/{artifact_path}/model.onnx",
        export_json_uri=f"runs:/{run_id}/{artifact_path}/export.json",
        sha256=hashlib.sha256(served).hexdigest(),
        size_bytes=len(served),
        opset=opset,
        quantize=quantize,
        inputs=describe(sess.get_inputs()),
        outputs=describe(sess.get_outputs()),
        parity=report,
        input_example=example.tolist(),
        example_outputs={o.name: v.tolist() for o, v in zip(sess.get_outputs(), outputs, strict=True)},
        versions=library_versions(),
        settings_hash=digest,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        export_seconds=0.0,
        alias=mv.alias,
    )
    return record, served


def _input_example(mlmodel, local: Path, mv: ResolvedVersion) -> np.ndarray:
    """The logged input example as float32, the parity gate's seed."""
    try:
        example = mlmodel.load_input_example(str(local))
    except Exception as exc:  # noqa: BLE001
        raise ExportFailedError(f"cannot read the input example of {mv.uri}: {exc}") from exc
    if example is None:
        raise ExportFailedError(
            f"{mv.uri} was logged without an input example; the parity gate needs one. "
            f"Re-log it with input_example=... (modelops-train always does)"
        )
    if isinstance(example, dict) and len(example) == 1:
        example = next(iter(example.values()))
    if hasattr(example, "to_numpy"):
        example = example.to_numpy()
    arr = np.asarray(example)
    if arr.dtype.kind not in "fiu":
        raise ExportFailedError(
            f"{mv.uri} has a non-numeric input example ({arr.dtype}); only one numeric tensor input is supported"
        )
    return np.ascontiguousarray(arr.astype(np.float32))


def _quantize_dynamic(onnx_bytes: bytes) -> bytes:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(onnx_bytes)
        try:
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        except Exception as exc:  # noqa: BLE001
            raise ExportFailedError(f"dynamic int8 quantization failed: {exc}; export without --quantize") from exc
        return dst.read_bytes()


def _export_run(mv: ResolvedVersion, tracking_uri: str) -> str:
    """The run that receives the export: the version's own run, else one dedicated export run."""
    if mv.run_id:
        return mv.run_id
    from .mlflow_client import ensure_experiment

    mc = client(tracking_uri)
    exp_id = ensure_experiment("modelops-exports", tracking_uri)
    tag = f"{mv.name}/{mv.version}"

    def get_or_create() -> str:
        runs = mc.search_runs([exp_id], filter_string=f"tags.`modelops.export_of` = '{tag}'", max_results=1)
        if runs:
            return runs[0].info.run_id
        run = mc.create_run(exp_id, tags={"modelops.export_of": tag}, run_name=f"export-{mv.name}-v{mv.version}")
        mc.set_terminated(run.info.run_id)
        return run.info.run_id

    return call_with_retries(get_or_create, what=f"find the export run of {mv.uri}", tracking_uri=tracking_uri)


def _download_model(mv: ResolvedVersion, tracking_uri: str, dst: Path) -> Path:
    """Download through the version's storage URI: ``models:/`` downloads would use the global registry URI."""
    import mlflow.artifacts

    mc = client(tracking_uri)
    dst.mkdir(parents=True, exist_ok=True)

    def download() -> str:
        location = mc.get_model_version_download_uri(mv.name, mv.version)
        return mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(dst), tracking_uri=tracking_uri)

    return Path(call_with_retries(download, what=f"download {mv.uri}", tracking_uri=tracking_uri))


def _existing_export(run_id: str, artifact_path: str, tracking_uri: str, dst: Path) -> tuple[ExportRecord, Path] | None:
    """A complete earlier export: export.json present and its sha256 matching model.onnx."""
    mc = client(tracking_uri)
    listed = call_with_retries(
        lambda: {Path(f.path).name for f in mc.list_artifacts(run_id, artifact_path)},
        what="list existing exports",
        tracking_uri=tracking_uri,
    )
    if not {"export.json", "model.onnx"} <= listed:
        return None
    dst.mkdir(parents=True, exist_ok=True)
    try:
        files = {
            name: Path(
                call_with_retries(
                    lambda name=name: mc.download_artifacts(run_id, f"{artifact_path}/{name}", str(dst)),
                    what=f"download the existing {name}",
                    tracking_uri=tracking_uri,
                )
            )
            for name in ("export.json", "model.onnx")
        }
        record = ExportRecord.from_dict(json.loads(files["export.json"].read_text()))
    except (ValueError, KeyError, TypeError, OSError):
        return None  # unreadable or from an incompatible schema: redo it
    if hashlib.sha256(files["model.onnx"].read_bytes()).hexdigest() != record.sha256:
        return None
    return record, files["model.onnx"]


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _publish_local(work: Path, onnx_bytes: bytes, record: ExportRecord) -> None:
    """Drop any stale marker, then model.onnx, then export.json last."""
    (work / "export.json").unlink(missing_ok=True)
    _atomic_write(work / "model.onnx", onnx_bytes)
    _atomic_write(work / "export.json", record.to_json().encode())


def _upload(work: Path, run_id: str, artifact_path: str, tracking_uri: str) -> None:
    mc = client(tracking_uri)
    for name in ("model.onnx", "export.json"):  # the marker goes last
        call_with_retries(
            lambda name=name: mc.log_artifact(run_id, str(work / name), artifact_path),
            what=f"upload {name}",
            tracking_uri=tracking_uri,
        )


class _Steps:
    """One-line progress on stderr when asked; silent for library callers by default."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __call__(self, what: str) -> None:
        if self.enabled:
            import sys

            print(f"[{self.elapsed():6.1f}s] {what}", file=sys.stderr, flush=True)

    def done(self) -> None:
        self("done")
