import json

from modelops_operator.spec import ServingSpec
from modelops_operator.target import HASH_KEY, ServingTarget, verified_hash


def test_a_target_round_trips_through_status_with_its_serving_settings():
    serving = ServingSpec.model_validate({"threads": 2, "env": [{"name": "A", "value": "1"}]})
    target = ServingTarget("3", "runs:/r/onnx/model.onnx", "f" * 64, "img:1", "http://mlflow",
                           serving=serving.model_dump(mode="json", by_alias=True, exclude_none=True))
    status = target.to_status()
    assert status["modelUri"] == "runs:/r/onnx/model.onnx" and status["serving"]["threads"] == 2
    restored = ServingTarget.from_status(status)
    assert restored == target
    assert ServingSpec.model_validate(restored.serving) == serving


def test_no_last_good_target_without_a_model_uri():
    assert ServingTarget.from_status(None) is None
    assert ServingTarget.from_status({"modelVersion": "1"}) is None


def target(**changes) -> ServingTarget:
    serving = ServingSpec().model_dump(mode="json", by_alias=True, exclude_none=True)
    fields = {"model_version": "3", "model_uri": "runs:/r/onnx/model.onnx", "sha256": "f" * 64,
              "image": "img:1", "tracking_uri": "http://mlflow", "serving": serving, **changes}
    return ServingTarget(**fields)


def test_the_same_target_always_hashes_the_same():
    assert target().hash() == target().hash()
    assert len(target().hash()) == 16


def test_any_serving_change_makes_a_different_hash_even_with_the_same_version():
    base = target()
    serving = base.serving
    changed = [
        target(serving={**serving, "threads": 2}),
        target(serving={**serving, "env": [{"name": "A", "value": "1"}]}),
        target(serving={**serving, "batching": {**serving["batching"], "enabled": False}}),
        target(image="img:2"),
        target(sha256="e" * 64),
        target(model_uri="runs:/s/onnx/model.onnx"),
        target(model_version="4"),
        target(tracking_uri="http://other"),
    ]
    hashes = {t.hash() for t in changed}
    assert base.hash() not in hashes and len(hashes) == len(changed)


def test_the_hash_survives_the_trip_through_status_where_json_turns_2_0_into_2():
    """A rollback rebuilds the pod template from status.lastGood: its pods must match the verified hash."""
    original = target()
    assert isinstance(original.serving["batching"]["maxDelayMs"], float)
    status = json.loads(json.dumps(original.to_status()).replace('"maxDelayMs": 2.0', '"maxDelayMs": 2'))
    assert status["serving"]["batching"]["maxDelayMs"] == 2
    restored = ServingTarget.from_status(status)
    assert restored.hash() == original.hash() == status[HASH_KEY]


def test_the_verified_hash_is_recorded_in_status_or_derived_from_an_older_operators_status():
    status = target().to_status()
    assert verified_hash(status) == target().hash()
    del status[HASH_KEY]
    assert verified_hash(status) == target().hash()
    assert verified_hash(None) is None and verified_hash({}) is None
