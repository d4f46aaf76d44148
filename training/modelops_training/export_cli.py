"""``modelops-export MODEL_URI [--out DIR] [--result-file PATH]``: the CLI face of ``export_model``.

It is what the operator's export Job runs. ``--result-file`` (in a Job: ``/dev/termination-log``)
receives a small JSON outcome the operator reads from the pod's termination message, so it never
has to parse logs: on success where the export is, on failure the exit code, whether retrying can
help, and the message with credentials redacted, cut to fit Kubernetes' 4 KiB limit.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from modelops_registry.redact import redact_text

from . import cli
from .errors import ModelopsError
from .export import (
    DEFAULT_INT8_TOLERANCE,
    DEFAULT_OPSET,
    DEFAULT_SAMPLES,
    DEFAULT_TOLERANCE,
    QUANTIZE_MODES,
    ExportRecord,
    export_model,
)

# Kubernetes keeps at most 4096 bytes of a container's termination message.
MAX_RESULT_BYTES = 4096
TRUNCATED = " [truncated]"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="modelops-export",
        description="Export a registered MLflow model version to ONNX behind a parity gate; writes model.onnx, "
        "the run's reference.json (when it logged one) and export.json to --out and uploads them next to the "
        "model version.",
    )
    p.add_argument("model_uri", metavar="MODEL_URI", help="models:/NAME/VERSION or models:/NAME@ALIAS")
    p.add_argument(
        "--out",
        help="folder for local copies of model.onnx, reference.json and export.json (default: none, only the upload)",
    )
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the local store)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default %(default)s)")
    p.add_argument("--quantize", choices=QUANTIZE_MODES, default="none", help="ship a dynamic int8 model")
    p.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="max absolute error allowed for fp32 (default %(default)g)",
    )
    p.add_argument(
        "--int8-tolerance",
        type=float,
        default=DEFAULT_INT8_TOLERANCE,
        help="max absolute error allowed for int8 (default %(default)g)",
    )
    p.add_argument(
        "--samples",
        type=int,
        default=DEFAULT_SAMPLES,
        help="extra inputs sampled like the input example for the parity gate (default %(default)s)",
    )
    p.add_argument("--force", action="store_true", help="re-export even if a complete export exists")
    p.add_argument("--json", action="store_true", help="print the export record as JSON on stdout")
    p.add_argument(
        "--result-file",
        metavar="PATH",
        help="write the outcome as JSON of at most 4 KiB (for a Kubernetes Job: /dev/termination-log)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.add_argument("-v", "--verbose", action="store_true", help="show library logs and warnings")
    return p


def summary(record: ExportRecord) -> str:
    p = record.parity
    lines = [
        f"{'reused' if record.reused else 'exported'} {record.model_uri} ({record.flavor}) -> {record.onnx_uri}",
        f"  sha256 {record.sha256}  opset {record.opset}  quantize {record.quantize}  {record.size_bytes} bytes",
        f"  inputs  {', '.join(f'{t.name} {t.datatype} {t.shape}' for t in record.inputs)}",
        f"  outputs {', '.join(f'{t.name} {t.datatype} {t.shape}' for t in record.outputs)}",
        f"  parity  {'passed' if p.passed else 'FAILED'}: max abs {p.max_abs_error:.3g} (tolerance {p.tolerance:g}),"
        f" max rel {p.max_rel_error:.3g}, {p.samples} inputs",
    ]
    if p.int8:
        lines.append(
            f"  int8    {'passed' if p.int8.passed else 'FAILED'}: max abs {p.int8.max_abs_error:.3g} "
            f"(tolerance {p.int8.tolerance:g}), top-1 agreement {p.int8.top1_agreement:.1%}"
        )
    return "\n".join(lines)


def success(record: ExportRecord) -> dict[str, Any]:
    """What the operator needs to roll out an export: where it is and what its bytes hash to."""
    return {
        "ok": True,
        "export_json_uri": record.export_json_uri,
        "onnx_uri": record.onnx_uri,
        "sha256": record.sha256,
        "run_id": record.run_id,
        "artifact_path": record.artifact_path,
        "reused": record.reused,
        "version": record.version,
    }


def failure(exit_code: int, retryable: bool, message: str) -> dict[str, Any]:
    """A failed export: ``retryable`` is true only when the registry was unavailable (exit code 4)."""
    return {"ok": False, "exit_code": exit_code, "retryable": retryable, "error": redact_text(message)}


def result_json(result: dict[str, Any], limit: int = MAX_RESULT_BYTES) -> str:
    """``result`` as JSON of at most ``limit`` bytes, cutting the end of ``error`` if it must."""
    text = json.dumps(result, allow_nan=False)
    error = result.get("error", "")
    while (over := len(text.encode()) - limit) > 0 and error:
        error = error[: max(0, len(error) - over - len(TRUNCATED))]
        text = json.dumps({**result, "error": error + TRUNCATED}, allow_nan=False)
    return text


def write_result(path: str, result: dict[str, Any]) -> None:
    """Write the result file; a failure to write is reported but never changes the exit code."""
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(result_json(result))
    except OSError as exc:
        print(f"warning: cannot write the result file {path}: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cli.setup_logging(args.verbose)

    def report(record: ExportRecord | None, error: ModelopsError | None, code: int) -> None:
        if not args.result_file:
            return
        if record is not None:
            write_result(args.result_file, success(record))
        elif error is not None:
            write_result(args.result_file, failure(code, error.retryable, str(error)))
        else:
            write_result(args.result_file, failure(code, True, "interrupted"))

    try:
        return _run(args, report)
    except Exception as exc:  # not ours: still leave the operator a reason, then fail loudly
        if args.result_file:
            write_result(args.result_file, failure(1, False, f"{type(exc).__name__}: {exc}"))
        raise


def _run(args: argparse.Namespace, report) -> int:
    return cli.run(
        lambda: export_model(
            args.model_uri,
            tracking_uri=args.tracking_uri,
            opset=args.opset,
            quantize=args.quantize,
            tolerance=args.tolerance,
            int8_tolerance=args.int8_tolerance,
            samples=args.samples,
            out_dir=args.out,
            force=args.force,
            progress=not args.quiet,
        ),
        summary,
        as_json=args.json,
        on_exit=report,
    )


if __name__ == "__main__":
    sys.exit(main())
