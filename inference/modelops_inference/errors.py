"""Every failure the server reports, as named exceptions mapped to HTTP status codes in one table.

Handlers raise these; the server turns them into `{"error": "..."}` responses with the status from
`STATUS_CODES`, so a client always gets a 4xx naming what was wrong rather than a 500.
"""

from __future__ import annotations


class InferenceError(Exception):
    """Base of every error the server answers with a JSON body."""


class InvalidInput(InferenceError):
    """The request body is malformed or does not match the model's inputs."""


class ModelNotFound(InferenceError):
    """The request names a model or version this server does not serve."""


class MethodNotAllowed(InferenceError):
    """An inference path was asked with a method other than POST."""


class PayloadTooLarge(InferenceError):
    """The request body is larger than `--max-body-bytes`."""


class UnsupportedMediaType(InferenceError):
    """The body is compressed (`Content-Encoding`); the server reads identity bodies only."""


class InferenceFailed(InferenceError):
    """onnxruntime rejected well-formed input (e.g. an index out of range); other requests are unaffected."""


class ModelNotReady(InferenceError):
    """The model is still loading, failed to load, or the server is draining."""


class Overloaded(InferenceError):
    """The server already holds `--max-queue-depth` inference requests: answered at once, with
    `Retry-After`, so a queue never grows until every caller times out."""

    retry_after_seconds = 1


class ModelLoadError(InferenceError):
    """The model could not be fetched, verified, opened or warmed up (never sent to clients as-is)."""


STATUS_CODES: dict[type[InferenceError], int] = {
    InvalidInput: 400,
    ModelNotFound: 404,
    MethodNotAllowed: 405,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    InferenceFailed: 422,
    ModelNotReady: 503,
    Overloaded: 503,
    ModelLoadError: 503,
}


def status_code(error: InferenceError) -> int:
    """The HTTP status of `error`, found by walking its class hierarchy through `STATUS_CODES`."""
    for cls in type(error).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return 500
