"""``modelops-export MODEL_URI --out DIR``: the CLI face of ``export_model``."""

from __future__ import annotations

import argparse
import sys

from . import cli
from .export import (
    DEFAULT_INT8_TOLERANCE,
    DEFAULT_OPSET,
    DEFAULT_SAMPLES,
    DEFAULT_TOLERANCE,
    QUANTIZE_MODES,
    ExportRecord,
    export_model,
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="modelops-export",
        description="Export a registered MLflow model version to ONNX behind a parity gate; writes model.onnx and "
        "export.json to --out and uploads both next to the model version.",
    )
    p.add_argument("model_uri", metavar="MODEL_URI", help="models:/NAME/VERSION or models:/NAME@ALIAS")
    p.add_argument("--out", required=True, help="folder for model.onnx and export.json")
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


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cli.setup_logging(args.verbose)

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
    )


if __name__ == "__main__":
    sys.exit(main())
