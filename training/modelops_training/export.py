"""Export a registered MLflow model version to ONNX behind a parity gate.

``export_model`` is the library entry point; ``modelops-export`` (what the operator's export Job
runs) wraps it. It resolves the URI to a concrete version once, or takes an already resolved one
(the operator passes ``models:/NAME/VERSION``, so an alias is never resolved twice), reuses an
existing complete export with the same settings, else converts, gates on parity (plain ONNX,
ORT-optimized, and int8 if asked), writes ``model.onnx``, the run's reference profile
(``reference.json``, when the version's run logged one) and ``export.json``, and uploads them in that
order to the version's run under ``onnx/opset<N>-<quantize>-<hash>/``. ``export.json`` is the
completion marker: it is written last and carries the ONNX file's sha256, so a half-finished export
never looks valid. The record types are modelops_registry's, where the operator reads them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

from modelops_registry import client as registry
from modelops_registry.errors import RegistryAnswer
from modelops_registry.reader import reader
from modelops_registry.record import (
    EXPORT_EXPERIMENT,
    EXPORT_RUN_TAG,
    SCHEMA_VERSION,
    ExportRecord,
    ParityReport,
    artifact_dir,
    export_run_id,
    read_export,
)

from . import parity as gate
from . import reference as profile
from .convert import convert, pick_flavor
from .errors import ExportFailedError, ModelopsError, ParityError, registry_errors
from .mlflow_client import call_with_retries, check_reachable, client, first_line, resolve_tracking_uri
from .runtime import describe, runner, session

Quantize = Literal["none", "dynamic-int8"]
QUANTIZE_MODES = ("none", "dynamic-int8")
DEFAULT_OPSET = 18
DEFAULT_TOLERANCE = 1e-4
DEFAULT_INT8_TOLERANCE = 0.1
DEFAULT_SAMPLES = 64
# The record types live in modelops_registry, where the operator reads them without torch.
__all__ = ["SCHEMA_VERSION", "ExportRecord", "ParityReport", "export_model", "library_versions", "settings_hash"]


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("modelops-training", "torch", "onnx", "onnxruntime", "onnxscript", "mlflow", "numpy", "skl2onnx"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def settings_hash(mv: registry.ResolvedVersion, **settings) -> str:
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
    model: str | registry.ResolvedVersion,
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
    """Export ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` or a ResolvedVersion to ONNX; returns the record.

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
    model_uri = model if isinstance(model, str) else model.uri
    try:
        with registry_errors():
            return _export(model, **settings)
    except ModelopsError:
        raise
    except Exception as exc:  # the operator must only ever see our hierarchy, with advice
        raise ExportFailedError(
            f"export of {model_uri} failed unexpectedly: {type(exc).__name__}: {first_line(exc)}; "
            f"retry, and if it persists run `modelops-export {model_uri} --out DIR -v` to see details"
        ) from exc


def _export(
    model: str | registry.ResolvedVersion,
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
    if isinstance(model, str):
        steps("resolve")
        mv, model_uri = registry.resolve(tracking_uri, model), model
    else:
        mv = model
        model_uri = f"models:/{mv.name}@{mv.alias}" if mv.alias else mv.uri
    run_id = _export_run(mv, tracking_uri)
    digest = settings_hash(
        mv, opset=opset, quantize=quantize, tolerance=tolerance, int8_tolerance=int8_tolerance, samples=samples
    )
    artifact_path = artifact_dir(opset, quantize, digest)

    with tempfile.TemporaryDirectory(prefix="modelops-export-") as tmp:
        work = Path(out_dir) if out_dir else Path(tmp) / "out"
        work.mkdir(parents=True, exist_ok=True)
        if not force:
            steps("look for an existing export")
            record = _existing_export(run_id, artifact_path, tracking_uri, work if out_dir else None)
            if record:
                record.source_uri, record.alias, record.reused = model_uri, mv.alias, True
                steps.done()
                return record
        steps("download model")
        local = _download_model(mv, tracking_uri, Path(tmp) / "model")
        reference = _download_reference(mv, tracking_uri)
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
        if reference is not None:
            _check_reference_width(reference, record, mv)
            record.reference = profile.FILENAME
        record.export_seconds = round(steps.elapsed(), 3)
        steps("write and upload")
        _publish_local(work, onnx_bytes, record, reference)
        _upload(work, run_id, artifact_path, tracking_uri, record)
    steps.done()
    return record


def _convert_and_gate(
    mv: registry.ResolvedVersion,
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


def _input_example(mlmodel, local: Path, mv: registry.ResolvedVersion) -> np.ndarray:
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


def _export_run(mv: registry.ResolvedVersion, tracking_uri: str) -> str:
    """The run that receives the export: the version's own run, else one dedicated export run."""
    with registry_errors():
        if run_id := export_run_id(tracking_uri, mv):
            return run_id
    from .mlflow_client import ensure_experiment

    mc = client(tracking_uri)
    exp_id = ensure_experiment(EXPORT_EXPERIMENT, tracking_uri)
    run = call_with_retries(
        lambda: mc.create_run(exp_id, tags={EXPORT_RUN_TAG: f"{mv.name}/{mv.version}"},
                              run_name=f"export-{mv.name}-v{mv.version}"),
        what=f"create the export run of {mv.uri}",
        tracking_uri=tracking_uri,
    )
    mc.set_terminated(run.info.run_id)
    return run.info.run_id


def _download_model(mv: registry.ResolvedVersion, tracking_uri: str, dst: Path) -> Path:
    """Download through the version's storage URI: ``models:/`` downloads would use the global registry URI."""
    mc = client(tracking_uri)
    dst.mkdir(parents=True, exist_ok=True)

    def download() -> str:
        location = mc.get_model_version_download_uri(mv.name, mv.version)
        return registry.download_artifacts(location, str(dst), tracking_uri=tracking_uri)

    return Path(call_with_retries(download, what=f"download {mv.uri}", tracking_uri=tracking_uri))


def _download_reference(mv: registry.ResolvedVersion, tracking_uri: str) -> bytes | None:
    """The version's run's reference profile (``reference.ARTIFACT``), validated; None when it has none.
    A profile that is there but malformed fails the export: it would mislead every drift alert."""
    if not mv.run_id:
        return None
    what = f"download {profile.ARTIFACT} of run {mv.run_id}"
    try:
        data = call_with_retries(
            lambda: reader(tracking_uri).read_artifact(mv.run_id, profile.ARTIFACT, profile.MAX_BYTES),
            what=what,
            tracking_uri=tracking_uri,
        )
    except RegistryAnswer as exc:
        raise ExportFailedError(f"cannot {what}: {exc}; fix or delete it, then export again") from exc
    if data is None:
        return None
    try:
        profile.parse(data)
    except profile.InvalidReference as exc:
        raise ExportFailedError(
            f"{mv.uri}: run {mv.run_id}'s {profile.ARTIFACT} is not a {profile.FORMAT} profile: {exc}; "
            f"re-log it (modelops_training.reference.profile writes one) or delete it, then export again"
        ) from exc
    return data


def _check_reference_width(reference: bytes, record: ExportRecord, mv: registry.ResolvedVersion) -> None:
    """A profile of another input width would bin the wrong columns: refused when the input shape says so."""
    shape = record.inputs[0].shape if len(record.inputs) == 1 else []
    if len(shape) < 2 or any(d <= 0 for d in shape[1:]):
        return  # several inputs or a dynamic row shape: the server checks the rows it sees
    columns = int(np.prod(shape[1:]))
    profiled = len(json.loads(reference)["features"])
    if profiled != min(columns, profile.MAX_FEATURES):
        raise ExportFailedError(
            f"{mv.uri}: {profile.ARTIFACT} profiles {profiled} features, but input {record.inputs[0].name!r} "
            f"{shape} has {columns} columns per row (at most {profile.MAX_FEATURES} are profiled); "
            f"re-log the profile from this model's training split"
        )


def _existing_export(run_id: str, artifact_path: str, tracking_uri: str, work: Path | None) -> ExportRecord | None:
    """A complete earlier export (modelops_registry.read_export: record readable, model.onnx of its
    size). With a local ``work`` folder its files are copied there, and a model.onnx whose sha256
    is not the record's, or a reference.json the record names but the folder lacks, means the
    export is redone."""
    with registry_errors():
        record = read_export(tracking_uri, run_id, artifact_path)
    if record is None or work is None:
        return record
    mc = client(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="modelops-existing-") as tmp:
        onnx_file = Path(
            call_with_retries(
                lambda: mc.download_artifacts(run_id, f"{artifact_path}/model.onnx", tmp),
                what="download the existing model.onnx",
                tracking_uri=tracking_uri,
            )
        )
        onnx_bytes = onnx_file.read_bytes()
    if hashlib.sha256(onnx_bytes).hexdigest() != record.sha256:
        return None
    reference = None
    if record.reference:
        path = f"{artifact_path}/{profile.FILENAME}"
        reference = call_with_retries(
            lambda: reader(tracking_uri).read_artifact(run_id, path, profile.MAX_BYTES),
            what=f"download the existing {path}",
            tracking_uri=tracking_uri,
        )
        if reference is None:
            return None
    _publish_local(work, onnx_bytes, record, reference)
    return record


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _publish_local(work: Path, onnx_bytes: bytes, record: ExportRecord, reference: bytes | None) -> None:
    """Drop any stale marker, then model.onnx, then reference.json (or drop a stale one), export.json last."""
    (work / "export.json").unlink(missing_ok=True)
    _atomic_write(work / "model.onnx", onnx_bytes)
    if reference is None:
        (work / profile.FILENAME).unlink(missing_ok=True)
    else:
        _atomic_write(work / profile.FILENAME, reference)
    _atomic_write(work / "export.json", record.to_json().encode())


def _upload(work: Path, run_id: str, artifact_path: str, tracking_uri: str, record: ExportRecord) -> None:
    mc = client(tracking_uri)
    names = ["model.onnx", *([profile.FILENAME] if record.reference else []), "export.json"]
    for name in names:  # the marker goes last
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
