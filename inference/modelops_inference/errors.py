"""Every failure the server reports, as named exceptions mapped to HTTP status codes in one table.

Handlers raise these; the server turns them into `{"error": "..."}` responses with the status from
`STATUS_CODES`, so a client always gets a 4xx naming what was wrong rather than a 500 (the one 500 in the
table is `InjectedFault`, a failure tests ask for). gRPC answers the
same error with the status code `GRPC_CODES` gives that HTTP status, so one table decides both protocols
(and a new error class needs one entry, not two).
"""

from __future__ import annotations


class InferenceError(Exception):
    """Base of every error the server answers with a JSON body (HTTP) or a status message (gRPC)."""

    # Seconds after which the same request may succeed (e.g. once a full server has room), for errors
    # that know: sent as Retry-After over HTTP and as grpc-retry-pushback-ms over gRPC.
    retry_after_seconds: float | None = None


class InvalidInput(InferenceError):
    """The request body is malformed or does not match the model's inputs."""


class Unauthorized(InferenceError):
    """The input sample was asked for without its bearer token, or with another."""


class RouteNotFound(InferenceError):
    """A path no route of this listener serves."""


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
    """The server already holds `--max-queue-depth` inference requests (HTTP and gRPC together): answered
    at once, with `Retry-After` (gRPC: UNAVAILABLE with grpc-retry-pushback-ms), so a queue never grows
    until every caller times out."""

    retry_after_seconds = 1


class ModelLoadError(InferenceError):
    """The model could not be fetched, verified, opened or warmed up (never sent to clients as-is)."""


class InjectedFault(InferenceError):
    """A request failed on purpose by `--fault-error-rate` (tests only): the one named error that is a 500,
    so it is counted and alerted on like any server error."""


STATUS_CODES: dict[type[InferenceError], int] = {
    InvalidInput: 400,
    Unauthorized: 401,
    RouteNotFound: 404,
    ModelNotFound: 404,
    MethodNotAllowed: 405,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    InferenceFailed: 422,
    ModelNotReady: 503,
    Overloaded: 503,
    ModelLoadError: 503,
    InjectedFault: 500,
}


def status_code(error: InferenceError) -> int:
    """The HTTP status of `error`, found by walking its class hierarchy through `STATUS_CODES`."""
    for cls in type(error).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return 500


# The gRPC status code of each HTTP status (the correspondence of Google's API design guide). Client errors
# stay client errors: a request onnxruntime rejects (422) is as much INVALID_ARGUMENT as a malformed one,
# and 503 (loading, draining, or turned away when full) is UNAVAILABLE, which gRPC clients retry.
GRPC_CODES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    413: "RESOURCE_EXHAUSTED",
    415: "INVALID_ARGUMENT",
    422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def grpc_code(status: int) -> str:
    """The gRPC status code name answering what HTTP answers with `status`; INTERNAL for anything else."""
    return GRPC_CODES.get(status, "INTERNAL")
