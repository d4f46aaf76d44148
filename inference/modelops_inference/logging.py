"""Structured JSON logs on stdout: one object per line, for error lines always and for every request
at debug level. Request payloads are never logged.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

# uvicorn's own loggers go through the same JSON handler; its access log is replaced by ours.
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error")


def configure(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(
        "{asctime}{levelname}{name}{message}", style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.captureWarnings(True)  # library warnings (mlflow, onnxruntime) as JSON lines too
