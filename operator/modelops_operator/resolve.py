"""Resolve what a ModelDeployment names in MLflow (a version, or an alias as it stands now)."""

from __future__ import annotations

import asyncio
import os

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from .spec import ModelRef

# Bound MLflow's own HTTP retries: its defaults back off for minutes, while the operator has its
# own retry loop (kopf.TemporaryError) and must report an unreachable registry promptly.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


class ModelVersionNotFound(Exception):
    """The named version or alias does not exist: a human must fix the spec or the registry."""


class RegistryUnavailable(Exception):
    """MLflow did not answer: worth retrying."""


def resolve_version_sync(model: ModelRef, tracking_uri: str | None) -> str:
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        if model.alias:
            return str(client.get_model_version_by_alias(model.name, model.alias).version)
        return str(client.get_model_version(model.name, model.version).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            what = f"alias {model.alias!r}" if model.alias else f"version {model.version}"
            raise ModelVersionNotFound(
                f"registered model {model.name!r} has no {what} in MLflow at {tracking_uri}: "
                f"check spec.model (name, version or alias) or register it first"
            ) from exc
        raise RegistryUnavailable(f"MLflow at {tracking_uri} failed: {exc.message}") from exc
    except Exception as exc:  # connection errors surface as requests/urllib3 exceptions
        raise RegistryUnavailable(f"MLflow at {tracking_uri} unreachable: {type(exc).__name__}: {exc}") from exc


async def resolve_version(model: ModelRef, tracking_uri: str | None) -> str:
    return await asyncio.to_thread(resolve_version_sync, model, tracking_uri)
