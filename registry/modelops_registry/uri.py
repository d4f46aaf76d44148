"""``models:/NAME/VERSION`` and ``models:/NAME@ALIAS``: the registry URIs every part speaks."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidModelUri

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[A-Za-z0-9_\-]+))/?$")


@dataclass(frozen=True)
class ModelRef:
    """A registered model named by version or by alias (exactly one of the two)."""

    name: str
    version: str | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, uri: str) -> ModelRef:
        match = _URI.match(uri.strip())
        if not match:
            raise InvalidModelUri(
                f"cannot read model URI {uri!r}: expected models:/NAME/VERSION or models:/NAME@ALIAS "
                f"(for example models:/breast-cancer/1 or models:/breast-cancer@champion)"
            )
        return cls(match["name"], match["version"], match["alias"])

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"

    def describe(self) -> str:
        return f"alias {self.alias!r}" if self.alias else f"version {self.version}"
