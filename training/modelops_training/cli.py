"""What both console scripts share: quiet logging, printing the result and one-message error exits."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from collections.abc import Callable
from typing import TypeVar

from modelops_registry.redact import redact_text

from .errors import ModelopsError

T = TypeVar("T")


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


def run(
    action: Callable[[], T],
    summary: Callable[[T], str],
    as_json: bool,
    on_exit: Callable[[T | None, ModelopsError | None, int], None] | None = None,
) -> int:
    """Run a CLI's action and print its result (``to_dict()`` as JSON with --json, else its summary);
    exit 0. A ModelopsError becomes one 'error: ...' line (credentials redacted) and its exit code.
    ``on_exit(result, error, exit_code)`` sees the outcome first (``modelops-export --result-file``)."""
    on_exit = on_exit or (lambda result, error, code: None)
    try:
        result = action()
    except ModelopsError as exc:
        on_exit(None, exc, exc.exit_code)
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        on_exit(None, None, 130)
        print("error: interrupted", file=sys.stderr)
        return 130
    on_exit(result, None, 0)
    print(json.dumps(result.to_dict(), indent=2) if as_json else summary(result))
    return 0
