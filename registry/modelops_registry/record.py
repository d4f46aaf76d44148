"""The export record (``export.json``) as typed data, and finding a complete earlier export.

The exporter writes ``model.onnx`` then ``export.json`` under ``onnx/opset<N>-<quantize>-<hash>/``
in the model version's run; ``export.json`` is the completion marker. The operator reads records
without torch or numpy, so these are plain dataclasses. An export counts as complete when
``export.json`` reads into an ``ExportRecord`` with the asked settings and ``model.onnx`` is listed
with the record's ``size_bytes``. The sha256 is not recomputed here: that would download the model
into the operator; every serving pod verifies it on download and refuses a mismatch, and a size
check already catches the half-written upload that completion is about.
"""

from __future__ import annotations

import json
import math
import posixpath
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .client import ResolvedVersion, RetryPolicy, call_with_retries
from .errors import RegistryAnswer, is_not_found
from .reader import reader

SCHEMA_VERSION = 1
EXPORT_ROOT = "onnx"  # artifact folder of every export inside a run
# Versions registered without a run get their exports in one run per version of this experiment.
EXPORT_EXPERIMENT = "modelops-exports"
EXPORT_RUN_TAG = "modelops.export_of"  # value: NAME/VERSION


@dataclass
class TensorInfo:
    """One input or output as the inference protocol describes it; -1 marks dynamic axes."""

    name: str
    datatype: str
    shape: list[int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorInfo:
        return cls(str(d["name"]), str(d["datatype"]), [int(x) for x in d["shape"]])


@dataclass
class ParityResult:
    """Worst-case disagreement over every output element of every checked input.

    ``passed`` means max_abs_error <= tolerance. NaN in both outputs at the same place counts as
    equal (the two runtimes agree); NaN or inf on one side only is an infinite error.
    """

    max_abs_error: float
    max_rel_error: float
    tolerance: float
    samples: int
    passed: bool
    top1_agreement: float | None = None  # share of rows whose argmax matches (classifiers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParityResult:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})

    def describe(self) -> str:
        agree = f", top-1 agreement {self.top1_agreement:.1%}" if self.top1_agreement is not None else ""
        return (
            f"max abs error {self.max_abs_error:.3g}, max rel error {self.max_rel_error:.3g}, "
            f"tolerance {self.tolerance:g}, {self.samples} inputs{agree}"
        )


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParityReport:
        return cls(
            d["max_abs_error"],
            d["max_rel_error"],
            d["tolerance"],
            d["samples"],
            d["passed"],
            d.get("top1_agreement"),
            {k: ParityResult.from_dict(v) for k, v in d.get("stages", {}).items()},
            ParityResult.from_dict(d["int8"]) if d.get("int8") else None,
        )

    @property
    def shipped_passed(self) -> bool:
        """Whether the model that ships passed: the int8 gate decides for a quantized export."""
        return self.passed and (self.int8 is None or self.int8.passed)


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
    # "reference.json" when the version's run had a reference profile, copied beside export.json; else None
    reference: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExportRecord:
        """Raises KeyError, TypeError or ValueError for a record this code cannot read."""
        d = dict(d)
        d["inputs"] = [TensorInfo.from_dict(t) for t in d["inputs"]]
        d["outputs"] = [TensorInfo.from_dict(t) for t in d["outputs"]]
        d["parity"] = ParityReport.from_dict(d["parity"])
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_json(cls, text: str) -> ExportRecord:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("export.json does not hold a JSON object")
        return cls.from_dict(data)


def artifact_dir(opset: int, quantize: str, digest: str) -> str:
    """Where one export's files live inside the run: ``onnx/opset<N>-<quantize>-<hash>``."""
    return f"{EXPORT_ROOT}/opset{opset}-{quantize}-{digest}"


def export_run_id(
    tracking_uri: str | None, resolved: ResolvedVersion, *, policy: RetryPolicy | None = None
) -> str | None:
    """The run that holds this version's exports: its own run, else the dedicated export run if any."""
    if resolved.run_id:
        return resolved.run_id
    rd = reader(tracking_uri)

    def search() -> str | None:
        return rd.export_run(EXPORT_EXPERIMENT, EXPORT_RUN_TAG, f"{resolved.name}/{resolved.version}")

    what = f"find the export run of {resolved.uri}"
    return call_with_retries(search, what=what, tracking_uri=tracking_uri, policy=policy)


def read_export(
    tracking_uri: str | None, run_id: str, artifact_path: str, *, policy: RetryPolicy | None = None
) -> ExportRecord | None:
    """The record of a complete export at ``runs:/<run_id>/<artifact_path>``, else None.

    None covers: no such run or folder, ``export.json`` missing or unreadable (another schema),
    a record naming another folder, ``model.onnx`` missing or not of the record's size.
    Raises RegistryUnavailable when MLflow does not answer.
    """
    mc = reader(tracking_uri)
    files = {
        posixpath.basename(f.path): f.file_size
        for f in _listing(mc, run_id, artifact_path, tracking_uri=tracking_uri, policy=policy)
    }
    if not files or "export.json" not in files or "model.onnx" not in files:
        return None
    with tempfile.TemporaryDirectory(prefix="modelops-record-") as tmp:
        local = call_with_retries(
            lambda: mc.download_artifacts(run_id, f"{artifact_path}/export.json", tmp),
            what=f"download {artifact_path}/export.json",
            tracking_uri=tracking_uri,
            policy=policy,
        )
        try:
            record = ExportRecord.from_json(Path(local).read_text())
        except (ValueError, KeyError, TypeError, OSError):
            return None
    if record.schema_version != SCHEMA_VERSION or record.artifact_path != artifact_path:
        return None
    if files["model.onnx"] != record.size_bytes:
        return None
    return record


def find_export(
    tracking_uri: str | None,
    resolved: ResolvedVersion,
    *,
    opset: int,
    quantize: str,
    tolerance: float,
    policy: RetryPolicy | None = None,
) -> ExportRecord | None:
    """A complete earlier export of ``resolved`` with these settings that passed its gates, else None.

    Looks at every ``onnx/opset<opset>-<quantize>-*`` folder of the version's run (the hash covers
    converter versions the caller may not know) and returns the newest matching record, marked
    ``reused`` and carrying ``resolved.alias``. Raises RegistryUnavailable when MLflow does not answer.
    """
    run_id = export_run_id(tracking_uri, resolved, policy=policy)
    if run_id is None:
        return None
    mc = reader(tracking_uri)
    prefix = f"opset{opset}-{quantize}-"
    folders = [f.path for f in _listing(mc, run_id, EXPORT_ROOT, tracking_uri=tracking_uri, policy=policy) if f.is_dir]
    candidates = []
    for folder in sorted(f for f in folders if posixpath.basename(f).startswith(prefix)):
        record = read_export(tracking_uri, run_id, folder, policy=policy)
        if record and _matches(record, resolved, opset=opset, quantize=quantize, tolerance=tolerance):
            candidates.append(record)
    if not candidates:
        return None
    best = max(candidates, key=lambda r: r.created_at)
    best.reused, best.alias = True, resolved.alias
    best.source_uri = f"models:/{resolved.name}@{resolved.alias}" if resolved.alias else resolved.uri
    return best


def _listing(mc, run_id: str, path: str, *, tracking_uri: str | None, policy: RetryPolicy | None) -> list:
    """The artifacts under ``path`` of ``run_id``; empty when the run or the folder does not exist."""
    def get() -> list:
        try:
            return mc.list_artifacts(run_id, path)
        except RegistryAnswer as exc:
            if is_not_found(exc):
                return []
            raise

    return call_with_retries(get, what=f"list {path} of run {run_id}", tracking_uri=tracking_uri, policy=policy)


def _matches(record: ExportRecord, resolved: ResolvedVersion, *, opset: int, quantize: str, tolerance: float) -> bool:
    return (
        record.name == resolved.name
        and record.version == resolved.version
        and record.opset == opset
        and record.quantize == quantize
        and math.isclose(record.parity.tolerance, tolerance, rel_tol=1e-9, abs_tol=0.0)
        and record.parity.shipped_passed
    )
