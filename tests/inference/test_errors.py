"""The one error table: every named error maps to a 4xx or 503, never to a 500, but the fault a test injects."""

from modelops_inference import errors


def test_every_error_type_has_a_status_code():
    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, errors.InferenceError) and cls not in {
                errors.InferenceError, errors.InjectedFault}:
            assert errors.status_code(cls("x")) in {400, 401, 404, 405, 413, 415, 422, 503}, cls


def test_an_injected_fault_is_a_500_and_grpc_internal_like_any_server_error():
    assert errors.status_code(errors.InjectedFault("x")) == 500
    assert errors.grpc_code(500) == "INTERNAL"


def test_client_errors_are_4xx_and_readiness_errors_are_503():
    assert errors.status_code(errors.InvalidInput("x")) == 400
    assert errors.status_code(errors.Unauthorized("x")) == 401
    assert errors.status_code(errors.ModelNotFound("x")) == 404
    assert errors.status_code(errors.PayloadTooLarge("x")) == 413
    assert errors.status_code(errors.InferenceFailed("x")) == 422
    assert errors.status_code(errors.ModelNotReady("x")) == 503


def test_subclasses_inherit_their_parents_status():
    class Special(errors.InvalidInput):
        pass

    assert errors.status_code(Special("x")) == 400


def test_every_status_the_table_gives_has_a_grpc_code_that_is_not_internal():
    for cls, status in errors.STATUS_CODES.items():
        if cls is not errors.InjectedFault:
            assert errors.grpc_code(status) not in {"INTERNAL", "UNKNOWN"}, status
    assert errors.grpc_code(errors.status_code(errors.InvalidInput("x"))) == "INVALID_ARGUMENT"
    assert errors.grpc_code(errors.status_code(errors.InferenceFailed("x"))) == "INVALID_ARGUMENT"
    assert errors.grpc_code(errors.status_code(errors.ModelNotReady("x"))) == "UNAVAILABLE"
    assert errors.grpc_code(500) == "INTERNAL"
