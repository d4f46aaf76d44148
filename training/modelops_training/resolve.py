"""Turn ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` into one concrete registry version.

Aliases move; an export must name the version it actually converted, so resolution happens
first and everything downstream uses the concrete version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidModelUriError, ModelNotFoundError
from .mlflow_client import call_with_retries, client, redact

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[A-Za-z0-9_\-]+))/?$")


@dataclass(frozen=True)
class ModelRef:
    """A parsed registry URI."""

    name: str
    version: str | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, uri: str) -> ModelRef:
        match = _URI.match(uri.strip())
        if not match:
            raise InvalidModelUriError(
                f"cannot read model URI {uri!r}: expected models:/NAME/VERSION or models:/NAME@ALIAS "
                f"(for example models:/breast-cancer/1 or models:/breast-cancer@champion)"
            )
        return cls(match["name"], match["version"], match["alias"])


@dataclass(frozen=True)
class ResolvedVersion:
    """The registry version a URI points at right now."""

    name: str
    version: str
    run_id: str | None
    source: str  # where the model's files live, e.g. models:/m-<id> or runs:/<run>/model
    alias: str | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def _missing(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or (
        code == "INVALID_PARAMETER_VALUE" and "alias" in str(exc).lower()
    )


def resolve_version(model_uri: str, tracking_uri: str) -> ResolvedVersion:
    """Resolve a registry URI; ModelNotFoundError says what exists instead."""
    from mlflow.exceptions import MlflowException

    ref = ModelRef.parse(model_uri)
    mc = client(tracking_uri)

    def lookup():
        try:
            if ref.alias:
                return mc.get_model_version_by_alias(ref.name, ref.alias)
            return mc.get_model_version(ref.name, ref.version)
        except MlflowException as exc:
            if _missing(exc):
                return None
            raise

    mv = call_with_retries(lookup, what=f"look up {model_uri}", tracking_uri=tracking_uri)
    if mv is None:
        raise ModelNotFoundError(_not_found_message(ref, mc, tracking_uri))
    return ResolvedVersion(ref.name, str(mv.version), mv.run_id or None, mv.source, ref.alias)


def _not_found_message(ref: ModelRef, mc, tracking_uri: str) -> str:
    from mlflow.exceptions import MlflowException

    where = redact(tracking_uri)
    try:
        model = mc.get_registered_model(ref.name)
    except MlflowException:
        names = sorted(m.name for m in mc.search_registered_models(max_results=20))
        known = f"registered models: {', '.join(names)}" if names else "the registry is empty"
        return (
            f"registered model {ref.name!r} not found in {where} ({known}); fix the name or "
            f"train and register one with `modelops-train --dataset ... --register {ref.name}`"
        )
    versions = sorted((int(v.version) for v in mc.search_model_versions(f"name='{ref.name}'")), reverse=True)
    aliases = ", ".join(f"{a}->v{v}" for a, v in sorted((model.aliases or {}).items())) or "none"
    what = f"alias {ref.alias!r}" if ref.alias else f"version {ref.version}"
    return (
        f"{what} of model {ref.name!r} not found in {where} (versions: "
        f"{', '.join(map(str, versions[:20])) or 'none'}; aliases: {aliases}); "
        f"use an existing version or alias, or set the alias first"
    )
