"""The one error table: every named error maps to a 4xx or 503, never to a 500."""

from modelops_inference import errors


def test_every_error_type_has_a_status_code():
    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, errors.InferenceError) and cls is not errors.InferenceError:
            assert errors.status_code(cls("x")) in {400, 404, 405, 413, 415, 422, 503}, cls


def test_client_errors_are_4xx_and_readiness_errors_are_503():
    assert errors.status_code(errors.InvalidInput("x")) == 400
    assert errors.status_code(errors.ModelNotFound("x")) == 404
    assert errors.status_code(errors.PayloadTooLarge("x")) == 413
    assert errors.status_code(errors.InferenceFailed("x")) == 422
    assert errors.status_code(errors.ModelNotReady("x")) == 503


def test_subclasses_inherit_their_parents_status():
    class Special(errors.InvalidInput):
        pass

    assert errors.status_code(Special("x")) == 400
