"""One exception hierarchy for training and export.

Every message says what failed and what to do, so the CLIs print it as is and callers (the
operator) can surface it verbatim. ``retryable`` tells a caller whether trying again later can
help (the registry was down) or a human must change something (a bad URI, a parity failure);
``exit_code`` is what the CLIs exit with, distinct per class for scripts. The registry's errors
(modelops_registry) become their subclasses here, so ``except RegistryUnavailable`` still catches.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from modelops_registry.errors import InvalidModelUri, ModelVersionNotFound, RegistryError, RegistryUnavailable


class ModelopsError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code = 1
    retryable = False


class ExportError(ModelopsError):
    """Base of every error ``export_model`` raises."""


class InvalidModelUriError(ExportError, InvalidModelUri):
    """The model URI is not ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``."""

    exit_code = 2


class ModelNotFoundError(ExportError, ModelVersionNotFound):
    """The registered model, version or alias does not exist."""

    exit_code = 3


class RegistryUnavailableError(ExportError, RegistryUnavailable):
    """MLflow could not be reached after bounded retries."""

    exit_code = 4
    retryable = True


class UnsupportedFlavorError(ExportError):
    """The model version has no flavor the exporter can convert."""

    exit_code = 5


class ExportFailedError(ExportError):
    """The conversion itself failed (for example the model cannot be traced)."""

    exit_code = 6


class ParityError(ExportError):
    """ONNX outputs differ from the source model's beyond the tolerance."""

    exit_code = 7

    def __init__(self, message: str, parity: object | None = None):
        super().__init__(message)
        self.parity = parity


class TrainingError(ModelopsError):
    """Training, logging or registration failed."""

    exit_code = 8


_FROM_REGISTRY = (
    (RegistryUnavailable, RegistryUnavailableError),
    (ModelVersionNotFound, ModelNotFoundError),
    (InvalidModelUri, InvalidModelUriError),
)


@contextmanager
def registry_errors() -> Iterator[None]:
    """Re-raise a modelops_registry error as this package's subclass (same message, exit code added)."""
    try:
        yield
    except ModelopsError:
        raise
    except RegistryError as exc:
        for theirs, ours in _FROM_REGISTRY:
            if isinstance(exc, theirs):
                raise ours(str(exc)) from exc
        raise
