"""Credentials out of anything that leaves the process: log lines, status messages, termination logs.

A tracking URI may carry ``user:password@``; an MLflow error may quote it, or a token taken from
the environment. Messages go to Kubernetes status and Events, which more people can read than the
Secret they came from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

# Environment variables whose values are secrets the MLflow client or an artifact store may use.
SECRET_ENV = (
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_CLIENT_CERT_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_CLIENT_SECRET",
    "MODELOPS_WEBHOOK_SECRET",
)
# Shorter values would blank ordinary words out of every message; such a secret is weak anyway.
MIN_SECRET_LENGTH = 4
MASK = "***"

# scheme://userinfo@ : userinfo is everything up to the first @ before any / ? # or whitespace.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#@\s]+)@")
# Signed-URL parameters (S3 presigned, Azure SAS, GCS) that work as credentials on their own.
_SIGNED_QUERY = re.compile(
    r"(?P<key>[?&](?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|X-Goog-Signature|sig|token)=)"
    r"(?P<value>[^&#\s]+)",
    re.IGNORECASE,
)


def redact_uri(uri: str) -> str:
    """``scheme://user:pass@host/...`` -> ``scheme://***@host/...``; anything else unchanged."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", uri, count=1) if "://" in uri else uri


def redact_text(text: str, env: Mapping[str, str] | None = None) -> str:
    """Hide URI userinfo, signed-URL parameters and the values of ``SECRET_ENV`` found in ``env``
    (default: this process's environment) anywhere in free text."""
    env = os.environ if env is None else env
    for name in SECRET_ENV:
        value = env.get(name, "")
        if len(value) >= MIN_SECRET_LENGTH:
            text = text.replace(value, MASK)
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    return _SIGNED_QUERY.sub(lambda m: f"{m['key']}{MASK}", text)
