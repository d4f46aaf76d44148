import dataclasses
import math

from modelops_operator.smoke import SmokeCase, SmokeResult, cases_from_export, cases_from_spec, check_response
from modelops_operator.spec import SmokeSpec
from modelops_registry import ExportRecord

# the fields smoke checks read; the rest of the record as export.json would carry it
RECORD = ExportRecord.from_dict({
    "source_uri": "models:/m/1", "name": "m", "version": "1", "model_uri": "models:/m/1", "run_id": "r",
    "flavor": "pytorch", "artifact_path": "onnx/x", "onnx_uri": "runs:/r/onnx/x/model.onnx",
    "export_json_uri": "runs:/r/onnx/x/export.json", "sha256": "0" * 64, "size_bytes": 1, "opset": 18,
    "quantize": "none", "versions": {}, "settings_hash": "h", "created_at": "2026-01-01T00:00:00+00:00",
    "export_seconds": 1.0,
    "parity": {"max_abs_error": 0.0, "max_rel_error": 0.0, "tolerance": 1e-4, "samples": 2, "passed": True},
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3]}],
    "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}],
    "input_example": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]],
    "example_outputs": {"probabilities": [[0.25, 0.75], [0.9, 0.1]]},
})


def answer(*values):
    return {"outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [1, len(values)], "data": list(values)}]}


def test_one_v2_request_per_example_row_expecting_the_onnx_outputs():
    cases = cases_from_export(RECORD)
    assert len(cases) == 2
    inp = cases[1].request["inputs"][0]
    assert inp == {"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [4.0, 5.0, 6.0]}
    assert cases[1].expected == {"probabilities": [0.9, 0.1]}


def test_bare_example_outputs_mean_the_single_output():
    record = dataclasses.replace(RECORD, example_outputs=[[0.25, 0.75], [0.9, 0.1]])
    assert cases_from_export(record)[0].expected == {"probabilities": [0.25, 0.75]}


def test_matching_answer_passes_and_drift_beyond_tolerance_fails():
    case = cases_from_export(RECORD)[0]
    assert check_response(case, 200, answer(0.2501, 0.7499), tolerance=1e-3) is None
    problem = check_response(case, 200, answer(0.5, 0.5), tolerance=1e-3)
    assert "differs by 0.25" in problem


def test_nan_outputs_fail_even_without_expectations():
    case = SmokeCase(request={}, expected=None)
    assert "not finite" in check_response(case, 200, answer(math.nan, 0.5), tolerance=1.0)


def test_http_errors_and_missing_outputs_are_reported_with_the_body():
    case = cases_from_export(RECORD)[0]
    assert check_response(case, 400, {"error": "bad shape"}, 1e-3).startswith("HTTP 400")
    assert "no outputs" in check_response(case, 200, {}, 1e-3)
    assert "has 3 values" in check_response(case, 200, answer(0.1, 0.2, 0.7), 1e-3)


def test_spec_requests_take_precedence_with_their_expected_outputs():
    smoke = SmokeSpec.model_validate({
        "requests": [{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1], "data": [1]}]}],
        "expectedOutputs": [{"outputs": [{"name": "probabilities", "data": [[0.5, 0.5]]}]}],
    })
    (case,) = cases_from_spec(smoke)
    assert case.expected == {"probabilities": [0.5, 0.5]}


def test_success_rate_gate():
    result = SmokeResult(total=4, passed=3, failures=["request 3: HTTP 500"])
    assert result.ok(0.75) and not result.ok(1.0)
    assert not SmokeResult(total=0, passed=0).ok(0.0)
    assert "3/4" in result.summary() and "HTTP 500" in result.summary()
