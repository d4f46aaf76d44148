"""What both console scripts share: quiet logging and one-message error exits."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable

from .errors import ModelopsError


def setup_logging(verbose: bool) -> None:
    """Our own INFO lines; library chatter (MLflow table creation, torch warnings) only with -v."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("modelops_training").setLevel(logging.INFO)
    if not verbose:
        warnings.simplefilter("ignore")
        for name in ("mlflow", "alembic", "torch", "onnxscript"):
            logging.getLogger(name).setLevel(logging.ERROR)


def run(main: Callable[[], int]) -> int:
    """Run a CLI body; a ModelopsError becomes one 'error: ...' line and its exit code."""
    try:
        return main()
    except ModelopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
