"""What a pod template serves (model, image and serving settings): what a rollout changes and a
rollback restores."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any

_STATUS_KEYS = {
    "model_version": "modelVersion",
    "model_uri": "modelUri",
    "sha256": "sha256",
    "image": "image",
    "tracking_uri": "trackingUri",
    "serving": "serving",
}
# status.lastGood.targetHash: the hash of the verified target, which the readiness gate compares with
# each pod's TARGET_HASH_ANNOTATION (manifests.py) before letting a pod in unchecked
HASH_KEY = "targetHash"


@dataclass(frozen=True)
class ServingTarget:
    model_version: str
    model_uri: str
    sha256: str
    image: str
    tracking_uri: str | None = None
    serving: dict | None = None  # spec.serving as applied (env, resources, threads...), camelCase

    def to_status(self) -> dict:
        """camelCase, as Kubernetes status fields are spelled, with the target's hash."""
        fields_ = {_STATUS_KEYS[f.name]: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}
        return {**fields_, HASH_KEY: self.hash()}

    @classmethod
    def from_status(cls, data: dict | None) -> ServingTarget | None:
        if not data or not data.get("modelUri"):
            return None
        return cls(**{attr: data.get(key) for attr, key in _STATUS_KEYS.items()})

    def hash(self) -> str:
        """A stable digest of everything the target puts in a pod: two pods with equal hashes serve the
        same model the same way, so a pod whose hash is the verified target's may skip the smoke checks.
        It survives the trip through status (JSON turns 2.0 into 2), so a restored target keeps its hash."""
        # falsy fields are left out of status, so they read back as None
        data = {key: _canonical(getattr(self, attr) or None) for attr, key in _STATUS_KEYS.items()}
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def verified_hash(last_good: dict | None) -> str | None:
    """The hash of the verified target in status.lastGood (computed when an older operator wrote it)."""
    if last_good and last_good.get(HASH_KEY):
        return last_good[HASH_KEY]
    target = ServingTarget.from_status(last_good)
    return target.hash() if target else None


def _canonical(value: Any) -> Any:
    """Integral floats as ints, as they read back from the API server."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
