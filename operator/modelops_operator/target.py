"""What a pod template serves (model, image and serving settings): what a rollout changes and a
rollback restores."""

from __future__ import annotations

from dataclasses import dataclass, fields

_STATUS_KEYS = {
    "model_version": "modelVersion",
    "model_uri": "modelUri",
    "sha256": "sha256",
    "image": "image",
    "tracking_uri": "trackingUri",
    "serving": "serving",
}


@dataclass(frozen=True)
class ServingTarget:
    model_version: str
    model_uri: str
    sha256: str
    image: str
    tracking_uri: str | None = None
    serving: dict | None = None  # spec.serving as applied (env, resources, threads...), camelCase

    def to_status(self) -> dict:
        """camelCase, as Kubernetes status fields are spelled."""
        return {_STATUS_KEYS[f.name]: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}

    @classmethod
    def from_status(cls, data: dict | None) -> ServingTarget | None:
        if not data or not data.get("modelUri"):
            return None
        return cls(**{attr: data.get(key) for attr, key in _STATUS_KEYS.items()})
