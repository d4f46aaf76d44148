"""modelops registry component: the one place that talks to the MLflow registry.

Modules, one concern each: `errors` (typed registry errors and MLflow's "not found" codes), `uri`
(parsing ``models:/NAME/VERSION`` and ``models:/NAME@ALIAS``), `client` (the client factory with the
project's HTTP retry and timeout settings, bounded retries, ``resolve``), `record` (the export record
as typed data; ``read_export`` and ``find_export``), `redact` (credentials out of messages) and
`reference` (the ``modelops.reference/v1`` drift profile format: its limits, ``validate``, ``parse``).
The operator, the exporter and the server all import it, so none of them re-implements a lookup.
The client factory is ``modelops_registry.client.client`` (not re-exported here, where the name
``client`` is the module).
"""

import os

# MLflow's usage telemetry is off unless the user turns it on (MLFLOW_DISABLE_TELEMETRY=false): an
# offline product phones nowhere, and MLflow 3's telemetry thread sets and removes an environment
# variable that races every thread reading os.environ. Set before any module here imports mlflow.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from .client import (  # noqa: E402 - after the telemetry default
    HTTP_SETTINGS,
    ResolvedVersion,
    RetryPolicy,
    apply_http_settings,
    call_with_retries,
    download_artifacts,
    is_unavailable,
    resolve,
)
from .errors import (  # noqa: E402
    NOT_FOUND_CODES,
    PERMANENT_CODES,
    InvalidModelUri,
    ModelVersionNotFound,
    RegistryAnswer,
    RegistryError,
    RegistryUnavailable,
)
from .record import ExportRecord, ParityReport, ParityResult, TensorInfo, find_export, read_export  # noqa: E402
from .redact import redact_text, redact_uri  # noqa: E402
from .uri import ModelRef  # noqa: E402

__all__ = [
    "HTTP_SETTINGS",
    "NOT_FOUND_CODES",
    "PERMANENT_CODES",
    "ExportRecord",
    "InvalidModelUri",
    "ModelRef",
    "ModelVersionNotFound",
    "ParityReport",
    "ParityResult",
    "RegistryAnswer",
    "RegistryError",
    "RegistryUnavailable",
    "ResolvedVersion",
    "RetryPolicy",
    "TensorInfo",
    "apply_http_settings",
    "call_with_retries",
    "download_artifacts",
    "find_export",
    "is_unavailable",
    "read_export",
    "redact_text",
    "redact_uri",
    "resolve",
]
