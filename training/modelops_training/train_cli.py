"""``modelops-train --dataset NAME``: train, log to MLflow, register and move aliases."""

from __future__ import annotations

import argparse
import sys

from . import cli
from .datasets import DATASETS
from .models import Sabotaged
from .train import TrainConfig, TrainResult, train


def sabotage_mode(text: str) -> str:
    """``--sabotage`` as given, once ``Sabotaged`` accepts it (argparse prints the reason if not)."""
    try:
        Sabotaged.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="modelops-train", description="Train a PyTorch model on a scikit-learn dataset and log it to MLflow."
    )
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--epochs", type=int, help="default: 40 for breast_cancer, 15 for digits")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0, help="same seed, same model and metrics")
    p.add_argument("--experiment", help="MLflow experiment (default modelops-<dataset>)")
    p.add_argument("--register", metavar="NAME", help="register the model as a new version of NAME")
    p.add_argument("--alias", help="point this alias at the new version (with --promote-if-better: which alias)")
    p.add_argument(
        "--promote-if-better",
        metavar="METRIC",
        help="move --alias (default champion) only if METRIC (e.g. test_f1) beats its current version",
    )
    p.add_argument(
        "--sabotage",
        type=sabotage_mode,
        metavar="MODE",
        help=f"register a deliberately broken model that still exports (for rollback tests): "
        f"{', '.join(Sabotaged.MODES)}",
    )
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the local store)")
    p.add_argument("--no-progress", action="store_true", help="no per-epoch progress bars")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("-v", "--verbose", action="store_true", help="show library logs and warnings")
    return p


def summary(result: TrainResult) -> str:
    metrics = "  ".join(f"{k}={v:.4f}" for k, v in result.test_metrics.items())
    lines = [f"run {result.run_id}: {metrics}", f"  logged model {result.model_uri}"]
    if result.registered_uri:
        lines.append(f"  registered {result.registered_uri}")
    if result.promotion:
        p = result.promotion
        verdict = "promoted" if p.promoted else "kept"
        lines.append(f"  {verdict} @{p.alias}: {p.reason}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cli.setup_logging(args.verbose)
    cfg = TrainConfig(
        dataset=args.dataset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        experiment=args.experiment,
        register=args.register,
        alias=args.alias,
        promote_if_better=args.promote_if_better,
        sabotage=args.sabotage,
        progress=not args.no_progress,
        tracking_uri=args.tracking_uri,
    )

    return cli.run(lambda: train(cfg), summary, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
