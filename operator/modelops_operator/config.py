"""Operator-wide settings, read once from the environment at start-up (the chart sets them)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .exports import JobSettings, strip_userinfo


def _flag(value: str | None, default: bool) -> bool:
    return default if value in (None, "") else value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class OperatorConfig:
    tracking_uri: str | None
    serving_image: str
    alias_poll_seconds: float
    api_port: int
    webhook_secret: str | None
    mlflow_proxy_uri: str | None
    export: JobSettings = field(default_factory=lambda: JobSettings(image="modelops/training:latest"))
    max_concurrent_exports: int = 2
    export_network_policy: bool = True
    allowed_tracking_uris: tuple[str, ...] = ()
    # The default Ingress host is <name>.<namespace>.<ingress_domain>; None: every Ingress needs a host.
    ingress_domain: str | None = None
    # The key serving pods' sample tokens are derived from (replay.token_for). The chart keeps one in a
    # Secret; without it a random key per process: pods started by an earlier process then refuse the
    # sample (their token differs) and replays use the evaluation set alone until the pods are replaced.
    replay_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    # The Gateway an HTTPRoute attaches to when spec.gateway names none (MODELOPS_GATEWAY,
    # "<namespace>/<name>[/<sectionName>]"), as a Gateway API parentRef.
    gateway: dict[str, str] | None = None
    # The Bearer token Alertmanager sends to POST /webhooks/alertmanager; None: that endpoint answers 503.
    alert_webhook_token: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> OperatorConfig:
        env = os.environ if env is None else env
        return cls(
            tracking_uri=env.get("MLFLOW_TRACKING_URI"),
            serving_image=env.get("MODELOPS_SERVING_IMAGE", "modelops/inference:latest"),
            alias_poll_seconds=float(env.get("MODELOPS_ALIAS_POLL_SECONDS", "30")),
            api_port=int(env.get("MODELOPS_API_PORT", "8081")),
            webhook_secret=env.get("MODELOPS_WEBHOOK_SECRET") or None,
            # The tracking URI the inference pods and export Jobs use, when it differs from the
            # operator's own (e.g. the operator runs outside the cluster in tests).
            mlflow_proxy_uri=env.get("MODELOPS_POD_TRACKING_URI") or None,
            export=JobSettings(
                image=env.get("MODELOPS_EXPORT_IMAGE", "modelops/training:latest"),
                deadline_seconds=int(env.get("MODELOPS_EXPORT_DEADLINE_SECONDS", "900")),
                ttl_seconds=int(env.get("MODELOPS_EXPORT_TTL_SECONDS", "3600")),
            ),
            max_concurrent_exports=max(1, int(env.get("MODELOPS_MAX_CONCURRENT_EXPORTS", "2"))),
            export_network_policy=_flag(env.get("MODELOPS_EXPORT_NETWORK_POLICY"), True),
            allowed_tracking_uris=tuple(u.strip() for u in env.get("MODELOPS_ALLOWED_TRACKING_URIS", "").split(",")
                                        if u.strip()),
            ingress_domain=env.get("MODELOPS_INGRESS_DOMAIN", "").strip().strip(".") or None,
            gateway=parent_ref(env.get("MODELOPS_GATEWAY", "")),
            alert_webhook_token=env.get("MODELOPS_ALERT_WEBHOOK_TOKEN", "").strip() or None,
            **({"replay_key": env["MODELOPS_REPLAY_KEY"].encode()} if env.get("MODELOPS_REPLAY_KEY") else {}),
        )

    def pod_tracking_uri(self, spec_tracking_uri: str | None) -> str | None:
        """The MLflow tracking URI the pods we start (inference, export and retrain Jobs) get: the spec's,
        else the one pods reach (MODELOPS_POD_TRACKING_URI), else the operator's; never with user:password@."""
        return strip_userinfo(spec_tracking_uri or self.mlflow_proxy_uri or self.tracking_uri)

    def allows(self, tracking_uri: str | None) -> bool:
        """Whether the operator may contact `tracking_uri` (None: its own). Compared by scheme, host,
        port and path, credentials aside, so a spec cannot point the operator (and its MLflow
        credentials) at a server of its own choosing."""
        if not tracking_uri:
            return True
        allowed = [u for u in (self.tracking_uri, self.mlflow_proxy_uri, *self.allowed_tracking_uris) if u]
        return _normal(tracking_uri) in {_normal(u) for u in allowed}


def parent_ref(value: str) -> dict[str, str] | None:
    """MODELOPS_GATEWAY as a parentRef; None when unset. A malformed value stops the operator at start-up."""
    if not value.strip():
        return None
    parts = value.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"MODELOPS_GATEWAY={value!r}: expected <namespace>/<name> or <namespace>/<name>/<sectionName>")
    return {"namespace": parts[0], "name": parts[1], **({"sectionName": parts[2]} if len(parts) == 3 else {})}


def _normal(uri: str) -> tuple:
    parts = urlsplit(uri.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:  # not a port: matches nothing
        return ("invalid", uri)
    return scheme, (parts.hostname or "").lower(), port, parts.path.rstrip("/")
