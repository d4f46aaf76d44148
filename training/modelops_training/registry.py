"""Registering versions and the champion workflow: an alias moves only to a better version."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from modelops_registry.errors import is_not_found

from .errors import TrainingError
from .mlflow_client import call_with_retries, client


@dataclass
class Promotion:
    """What ``promote_if_better`` decided, and why (logged and printed by the CLI)."""

    alias: str
    metric: str
    promoted: bool
    new_version: str
    new_value: float | None
    previous_version: str | None
    previous_value: float | None
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def register(model_uri: str, name: str, *, run_id: str, tracking_uri: str) -> str:
    """Register ``model_uri`` as a new version of ``name`` (created on first use); returns it."""
    mc = client(tracking_uri)

    def create() -> str:
        from mlflow.exceptions import MlflowException

        try:
            mc.create_registered_model(name)
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                raise
        source, model_id = model_uri, None
        if model_uri.startswith("models:/m-"):
            # MLflow resolves models:/m-<id> sources through the *global* tracking URI; resolve
            # it with our bound client instead so registration works whatever the process state.
            model_id = model_uri.removeprefix("models:/").strip("/")
            source = mc.get_logged_model(model_id).artifact_location
        mv = mc.create_model_version(name, source=source, run_id=run_id, model_id=model_id)
        return str(mv.version)

    return call_with_retries(create, what=f"register a version of {name!r}", tracking_uri=tracking_uri)


def set_alias(name: str, alias: str, version: str, *, tracking_uri: str) -> None:
    mc = client(tracking_uri)
    call_with_retries(
        lambda: mc.set_registered_model_alias(name, alias, version),
        what=f"set alias {name}@{alias}",
        tracking_uri=tracking_uri,
    )


def alias_version(name: str, alias: str, *, tracking_uri: str) -> str | None:
    """The version ``name@alias`` points at, or None when the alias is not set."""
    from mlflow.exceptions import MlflowException

    mc = client(tracking_uri)

    def get() -> str | None:
        try:
            return str(mc.get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            if is_not_found(exc, lookup=True):
                return None
            raise

    return call_with_retries(get, what=f"read alias {name}@{alias}", tracking_uri=tracking_uri)


def version_metric(name: str, version: str, metric: str, *, tracking_uri: str) -> float | None:
    """The final value of ``metric`` in the run that produced ``name`` version ``version``."""
    mc = client(tracking_uri)

    def get() -> float | None:
        run_id = mc.get_model_version(name, version).run_id
        return mc.get_run(run_id).data.metrics.get(metric) if run_id else None

    return call_with_retries(get, what=f"read {metric} of {name} v{version}", tracking_uri=tracking_uri)


def lower_is_better(metric: str) -> bool:
    return any(word in metric for word in ("loss", "error", "mae", "mse", "rmse"))


def promote_if_better(name: str, version: str, *, alias: str, metric: str, tracking_uri: str) -> Promotion:
    """Point ``alias`` at ``version`` if it beats the alias's current version on ``metric``.

    Higher wins, except for loss/error metrics. An unset alias is simply set; a NaN or missing
    new value never wins; a tie keeps the incumbent (no churn without improvement).
    """
    new_value = version_metric(name, version, metric, tracking_uri=tracking_uri)
    if new_value is None:
        raise TrainingError(
            f"run of {name} v{version} has no metric {metric!r}; "
            f"use one the run logs, e.g. test_accuracy, test_f1, test_roc_auc, test_loss"
        )
    current = alias_version(name, alias, tracking_uri=tracking_uri)
    decision = Promotion(alias, metric, False, version, new_value, current, None, "")
    if current is None:
        decision.promoted, decision.reason = True, f"alias {alias!r} was not set"
    elif current == version:
        decision.promoted, decision.reason = False, f"alias {alias!r} already points at v{version}"
    else:
        old_value = version_metric(name, current, metric, tracking_uri=tracking_uri)
        decision.previous_value = old_value
        if math.isnan(new_value):
            decision.reason = f"new {metric} is NaN"
        elif old_value is None or math.isnan(old_value):
            decision.promoted, decision.reason = True, f"v{current} has no usable {metric}"
        elif (new_value < old_value) if lower_is_better(metric) else (new_value > old_value):
            decision.promoted, decision.reason = True, f"{metric} {new_value:.4f} beats {old_value:.4f}"
        else:
            decision.reason = f"{metric} {new_value:.4f} does not beat v{current}'s {old_value:.4f}"
    if decision.promoted:
        set_alias(name, alias, version, tracking_uri=tracking_uri)
    return decision
