"""Operator-wide settings, read once from the environment at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class OperatorConfig:
    tracking_uri: str | None
    serving_image: str
    alias_poll_seconds: float
    api_port: int
    webhook_secret: str | None
    mlflow_proxy_uri: str | None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> OperatorConfig:
        env = os.environ if env is None else env
        return cls(
            tracking_uri=env.get("MLFLOW_TRACKING_URI"),
            serving_image=env.get("MODELOPS_SERVING_IMAGE", "modelops/inference:latest"),
            alias_poll_seconds=float(env.get("MODELOPS_ALIAS_POLL_SECONDS", "30")),
            api_port=int(env.get("MODELOPS_API_PORT", "8081")),
            webhook_secret=env.get("MODELOPS_WEBHOOK_SECRET") or None,
            # The tracking URI the inference pods use, when it differs from the operator's own
            # (e.g. the operator runs outside the cluster in tests).
            mlflow_proxy_uri=env.get("MODELOPS_POD_TRACKING_URI") or None,
        )
