from modelops_operator.spec import ServingSpec
from modelops_operator.target import ServingTarget


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
