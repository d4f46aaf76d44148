"""The registry's error types and the MLflow error codes that decide between them.

``retryable`` says whether trying again later can help (MLflow did not answer) or a human must
change something (a name, version or alias that does not exist). Other components subclass these
to give them their own exit codes or HTTP statuses, so ``except ModelVersionNotFound`` catches all.
"""

from __future__ import annotations

# MLflow's answers for "no such registered model, version or alias". An unknown alias (and a version
# that is not a number) comes back as INVALID_PARAMETER_VALUE, so that code counts as "not found"
# only for a lookup by version or alias, where the parameter is the reference itself.
NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"})
# Codes no retry can fix: the not-found ones, a bad parameter, no permission.
PERMANENT_CODES = NOT_FOUND_CODES | {"INVALID_PARAMETER_VALUE", "PERMISSION_DENIED", "UNAUTHENTICATED"}


class RegistryError(Exception):
    """Base of every error this package raises on purpose."""

    retryable = False


class InvalidModelUri(RegistryError, ValueError):
    """The text is not ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``."""


class ModelVersionNotFound(RegistryError):
    """The named model, version or alias does not exist: a human must fix the name or the registry."""


class RegistryUnavailable(RegistryError):
    """MLflow could not be reached after bounded retries: worth retrying later."""

    retryable = True


class RegistryAnswer(Exception):
    """MLflow answered a read with an error (its error code in ``error_code``), from either reader."""

    def __init__(self, error_code: str, message: str):
        super().__init__(f"{error_code}: {message}")
        self.error_code, self.message = error_code, message


def is_not_found(exc: BaseException, *, lookup: bool = False) -> bool:
    """True when an MlflowException means "does not exist"; ``lookup``: the request was a lookup by
    version or alias, where an invalid parameter means that version or alias does not exist."""
    code = getattr(exc, "error_code", "")
    return code in NOT_FOUND_CODES or (lookup and code == "INVALID_PARAMETER_VALUE")
