import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from modelops_training.errors import (
    ExportFailedError,
    InvalidModelUriError,
    ModelNotFoundError,
    ParityError,
    RegistryUnavailableError,
    UnsupportedFlavorError,
)
from modelops_training.export import ExportRecord, export_model
from tests.support import free_port
from tests.training.conftest import BC, DIGITS


class Branchy(torch.nn.Module):
    """Data-dependent Python control flow: torch.export cannot trace it."""

    def forward(self, input):  # noqa: A002
        if input.sum() > 0:
            return torch.softmax(input[:, :2], dim=-1)
        return torch.softmax(-input[:, :2], dim=-1)


class Echo:
    """A pyfunc-only model: no flavor the exporter converts."""


def _client(store):
    from mlflow import MlflowClient

    return MlflowClient(store.uri, registry_uri=store.uri)


def _log_and_register(store, name: str, log) -> str:
    """Log a model with ``log(name='model')`` in a fresh run and register it; returns the version."""
    import mlflow

    from modelops_training.mlflow_client import ensure_experiment
    from modelops_training.registry import register

    # a dedicated experiment: the store's Default experiment would put artifacts in ./mlruns
    with mlflow.start_run(experiment_id=ensure_experiment("export-tests", store.uri)) as run:
        info = log()
    return register(info.model_uri, name, run_id=run.info.run_id, tracking_uri=store.uri)


@pytest.fixture(scope="module")
def bc_export(store, bc_v1, tmp_path_factory):
    out = tmp_path_factory.mktemp("bc-export")
    return export_model(f"models:/{BC}@champion", tracking_uri=store.uri, out_dir=out, force=True), out


def test_alias_resolves_to_the_version_and_the_contract_holds(bc_export):
    record, _ = bc_export
    assert (record.name, record.version, record.alias, record.flavor) == (BC, "1", "champion", "pytorch")
    assert record.source_uri == f"models:/{BC}@champion" and record.model_uri == f"models:/{BC}/1"
    assert [t.to_dict() for t in record.inputs] == [{"name": "input", "datatype": "FP32", "shape": [-1, 30]}]
    assert [t.to_dict() for t in record.outputs] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}]
    assert record.onnx_uri == f"runs:/{record.run_id}/{record.artifact_path}/model.onnx"
    assert record.artifact_path.startswith("onnx/opset18-none-")
    assert not record.reused and record.quantize == "none" and record.opset == 18


def test_the_runs_reference_profile_is_copied_beside_export_json(bc_export, local, store):
    import mlflow

    from modelops_training.reference import ARTIFACT, parse

    record, out = bc_export
    logged = mlflow.artifacts.load_text(f"runs:/{record.run_id}/{ARTIFACT}")
    assert record.reference == "reference.json"
    assert json.loads((out / "export.json").read_text())["reference"] == "reference.json"
    assert (out / "reference.json").read_text() == logged
    uploaded = f"runs:/{record.run_id}/{record.artifact_path}/reference.json"
    assert mlflow.artifacts.load_text(uploaded) == logged
    assert parse(logged)["rows"] == int(_client(store).get_run(record.run_id).data.params["train_size"])


def test_the_reference_is_uploaded_after_the_model_and_before_the_marker(bc_v1, store, monkeypatch, tmp_path):
    from modelops_training import export as export_module

    uploads = []

    class Recording:
        def __init__(self, real):
            self.real = real

        def __getattr__(self, name):
            return getattr(self.real, name)

        def log_artifact(self, run_id, local_path, artifact_path=None):
            uploads.append(Path(local_path).name)
            return self.real.log_artifact(run_id, local_path, artifact_path)

    real_client = export_module.client
    monkeypatch.setattr(export_module, "client", lambda uri: Recording(real_client(uri)))
    record = export_model(f"models:/{BC}/1", tracking_uri=store.uri, samples=5, force=True, out_dir=tmp_path)
    assert record.reference == "reference.json"
    assert uploads == ["model.onnx", "reference.json", "export.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.json", "model.onnx", "reference.json"]


def test_parity_is_measured_on_the_example_and_sampled_inputs(bc_export):
    parity = bc_export[0].parity
    assert parity.passed and parity.max_abs_error <= parity.tolerance == 1e-4
    assert parity.samples == len(bc_export[0].input_example) + 64
    assert set(parity.stages) == {"onnx", "ort_optimized"} and parity.int8 is None


def test_example_outputs_are_what_onnxruntime_answers(bc_export):
    import onnxruntime as ort

    record, out = bc_export
    sess = ort.InferenceSession(str(out / "model.onnx"))
    got = sess.run(None, {"input": np.asarray(record.input_example, dtype=np.float32)})[0]
    np.testing.assert_allclose(got, record.example_outputs["probabilities"], rtol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)


def test_onnx_uri_downloads_from_another_process(bc_export, store, tmp_path):
    record, out = bc_export
    code = (
        "import mlflow, sys; print(mlflow.artifacts.download_artifacts(sys.argv[1], tracking_uri=sys.argv[2], "
        "dst_path=sys.argv[3]))"
    )
    for uri in (record.onnx_uri, record.export_json_uri):
        path = (
            subprocess.run(
                [sys.executable, "-c", code, uri, store.uri, str(tmp_path)],
                check=True,
                capture_output=True,
                text=True,
                cwd=tmp_path,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        assert Path(path).read_bytes() == (out / Path(path).name).read_bytes()
    assert hashlib.sha256((tmp_path / "model.onnx").read_bytes()).hexdigest() == record.sha256
    assert ExportRecord.from_dict(json.loads((tmp_path / "export.json").read_text())).sha256 == record.sha256


def test_a_complete_export_is_reused_not_redone(bc_export, store, tmp_path):
    first, _ = bc_export
    again = export_model(f"models:/{BC}/1", tracking_uri=store.uri, out_dir=tmp_path)
    assert again.reused and again.sha256 == first.sha256 and again.onnx_uri == first.onnx_uri
    assert again.source_uri == f"models:/{BC}/1" and again.alias is None
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "export.json").is_file()
    assert again.reference == "reference.json"
    assert (tmp_path / "reference.json").read_bytes() == (bc_export[1] / "reference.json").read_bytes()
    other = export_model(f"models:/{BC}/1", tracking_uri=store.uri, samples=8)
    assert not other.reused and other.artifact_path != first.artifact_path


def test_an_already_resolved_version_is_not_resolved_again(bc_export, store, monkeypatch):
    from modelops_registry import resolve
    from modelops_training import export as export_module

    first, _ = bc_export
    resolved = resolve(store.uri, f"models:/{BC}@champion")

    def resolve_again(*args, **kwargs):
        raise AssertionError("export_model resolved a version it was given")

    monkeypatch.setattr(export_module.registry, "resolve", resolve_again)
    again = export_model(resolved, tracking_uri=store.uri)
    assert again.reused and again.sha256 == first.sha256 and again.alias == "champion"


def test_what_export_writes_is_what_the_operator_finds(bc_export, store):
    from modelops_registry import find_export, read_export, resolve

    first, _ = bc_export
    assert read_export(store.uri, first.run_id, first.artifact_path).sha256 == first.sha256
    # other tests add exports with other samples: the newest complete one with these settings wins
    found = find_export(store.uri, resolve(store.uri, f"models:/{BC}/1"), opset=18, quantize="none", tolerance=1e-4)
    assert found is not None and found.reused and (found.name, found.version) == (BC, "1")
    assert found.artifact_path.startswith("onnx/opset18-none-") and found.parity.passed


def test_a_half_written_or_tampered_export_is_redone(bc_v1, store, tmp_path):
    record = export_model(f"models:/{BC}/1", tracking_uri=store.uri, samples=4)
    folder = (
        Path(_client(store).get_run(record.run_id).info.artifact_uri.removeprefix("file://")) / record.artifact_path
    )
    (folder / "export.json").unlink()  # as if the upload died between the two files
    redone = export_model(f"models:/{BC}/1", tracking_uri=store.uri, samples=4)
    assert not redone.reused and (folder / "export.json").is_file()
    (folder / "model.onnx").write_bytes(b"not the exported model")
    assert not export_model(f"models:/{BC}/1", tracking_uri=store.uri, samples=4).reused


def test_digits_cnn_exports_with_its_image_input(digits_v1, store):
    record = export_model(f"models:/{DIGITS}/1", tracking_uri=store.uri)
    assert record.inputs[0].shape == [-1, 1, 8, 8] and record.outputs[0].shape == [-1, 10]
    assert record.parity.passed and np.asarray(record.input_example).shape[1:] == (1, 8, 8)


def test_int8_path_has_its_own_looser_gate(digits_v1, store, tmp_path):
    import onnx

    record = export_model(
        f"models:/{DIGITS}@champion", tracking_uri=store.uri, quantize="dynamic-int8", out_dir=tmp_path
    )
    assert record.quantize == "dynamic-int8" and "dynamic-int8" in record.artifact_path
    assert record.parity.passed and record.parity.int8.passed
    assert record.parity.int8.tolerance == 0.1 and record.parity.int8.max_abs_error > record.parity.max_abs_error
    ops = {node.op_type for node in onnx.load(str(tmp_path / "model.onnx")).graph.node}
    assert ops & {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger"}

    # int8 activations are scaled per batch: the recorded outputs are each row's answer on its own,
    # which is what a one-row smoke request gets back
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "model.onnx"))
    example = np.asarray(record.input_example, dtype=np.float32)
    alone = np.concatenate([sess.run(None, {"input": example[i : i + 1]})[0] for i in range(len(example))])
    np.testing.assert_allclose(alone, record.example_outputs["probabilities"], rtol=1e-6, atol=1e-7)


def test_parity_failure_names_the_errors_and_leaves_nothing_valid(digits_v1, store, tmp_path):
    with pytest.raises(ParityError, match=r"max abs error .* tolerance 1e-12") as err:
        export_model(f"models:/{DIGITS}/1", tracking_uri=store.uri, tolerance=1e-12, out_dir=tmp_path)
    assert not err.value.parity.passed
    assert not (tmp_path / "export.json").exists() and not (tmp_path / "model.onnx").exists()
    run_id = _client(store).get_model_version(DIGITS, "1").run_id
    exports = [a.path for a in _client(store).list_artifacts(run_id, "onnx")]
    assert not any(p.startswith("onnx/opset18-none-") and "1e-12" in p for p in exports)


def test_int8_parity_failure_is_reported_with_its_tolerance(digits_v1, store):
    with pytest.raises(ParityError, match="int8 parity gate failed.*tolerance 1e-09"):
        export_model(f"models:/{DIGITS}/1", tracking_uri=store.uri, quantize="dynamic-int8", int8_tolerance=1e-9)


@pytest.mark.parametrize(
    "uri, match",
    [
        ("models:/no-such-model/1", "registered model 'no-such-model' not found"),
        (f"models:/{BC}/99", "version 99 of model 'test-breast-cancer' not found .*versions: 1"),
        (f"models:/{BC}@nope", "alias 'nope' of model 'test-breast-cancer' not found .*champion->v1"),
    ],
)
def test_missing_models_versions_and_aliases_say_what_exists(bc_v1, store, uri, match):
    with pytest.raises(ModelNotFoundError, match=match):
        export_model(uri, tracking_uri=store.uri)


def test_malformed_uri_is_refused(store):
    with pytest.raises(InvalidModelUriError):
        export_model("runs:/abc/model", tracking_uri=store.uri)


def test_unreachable_mlflow_fails_after_bounded_retries(monkeypatch):
    monkeypatch.setenv("MODELOPS_MLFLOW_RETRIES", "2")
    with pytest.raises(RegistryUnavailableError, match="unreachable.*2 attempts") as err:
        export_model(f"models:/{BC}/1", tracking_uri=f"http://127.0.0.1:{free_port()}")
    assert err.value.retryable


def test_a_model_that_cannot_be_traced_fails_with_advice(local):
    import mlflow

    example = np.random.default_rng(0).random((4, 3)).astype(np.float32)
    version = _log_and_register(
        local,
        "branchy",
        lambda: mlflow.pytorch.log_model(Branchy(), name="model", input_example=example, serialization_format="pickle"),
    )
    with pytest.raises(ExportFailedError, match="could not trace .*data-dependent"):
        export_model(f"models:/branchy/{version}", tracking_uri=local.uri)


def test_unsupported_flavor_lists_the_supported_ones(local):
    import mlflow

    class EchoModel(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input

    version = _log_and_register(
        local,
        "echo",
        lambda: mlflow.pyfunc.log_model(
            name="model", python_model=EchoModel(), input_example=np.zeros((2, 3), dtype=np.float32)
        ),
    )
    with pytest.raises(UnsupportedFlavorError, match="unsupported flavor .*supported: pytorch, onnx, sklearn"):
        export_model(f"models:/echo/{version}", tracking_uri=local.uri)


def test_onnx_flavor_is_validated_and_passed_through(local, bc_export):
    import mlflow
    import onnx

    record, out = bc_export
    example = np.asarray(record.input_example, dtype=np.float32)
    version = _log_and_register(
        local,
        "bc-onnx",
        lambda: mlflow.onnx.log_model(onnx.load(str(out / "model.onnx")), name="model", input_example=example),
    )
    passed = export_model(f"models:/bc-onnx/{version}", tracking_uri=local.uri)
    assert passed.flavor == "onnx" and passed.parity.passed and passed.parity.max_abs_error == 0.0
    np.testing.assert_allclose(
        passed.example_outputs["probabilities"], record.example_outputs["probabilities"], rtol=1e-6
    )


def test_sklearn_flavor_exports_probabilities_through_skl2onnx(local, tmp_path):
    import mlflow
    from sklearn.linear_model import LogisticRegression

    from modelops_training.datasets import load_dataset

    data = load_dataset("breast_cancer")
    clf = LogisticRegression(max_iter=2000).fit(data.x_train, data.y_train)
    version = _log_and_register(
        local, "bc-sklearn", lambda: mlflow.sklearn.log_model(clf, name="model", input_example=data.x_test[:5])
    )
    out = tmp_path / "out"
    record = export_model(f"models:/bc-sklearn/{version}", tracking_uri=local.uri, tolerance=1e-3, out_dir=out)
    assert record.flavor == "sklearn" and record.parity.passed
    assert [t.name for t in record.outputs] == ["probabilities"] and record.outputs[0].shape[1] == 2
    # a run that logged no reference profile still exports, and says so
    assert record.reference is None and json.loads((out / "export.json").read_text())["reference"] is None
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.onnx"]


def _sklearn_with_reference(local, name: str, reference: dict) -> str:
    import mlflow
    from sklearn.linear_model import LogisticRegression

    from modelops_training.datasets import load_dataset

    data = load_dataset("breast_cancer")
    clf = LogisticRegression(max_iter=2000).fit(data.x_train, data.y_train)

    def log():
        mlflow.log_dict(reference, "reference/reference.json")
        return mlflow.sklearn.log_model(clf, name="model", input_example=data.x_test[:5])

    return _log_and_register(local, name, log)


def test_a_profile_logged_by_other_training_code_is_carried(local, tmp_path):
    from modelops_training.datasets import load_dataset
    from modelops_training.reference import profile

    data = load_dataset("breast_cancer")
    doc = profile(data.x_train, np.eye(2, dtype=np.float32)[data.y_train], data.feature_names)
    version = _sklearn_with_reference(local, "bc-own-reference", doc)
    record = export_model(f"models:/bc-own-reference/{version}", tracking_uri=local.uri, tolerance=1e-3,
                          out_dir=tmp_path)
    assert record.reference == "reference.json"
    assert json.loads((tmp_path / "reference.json").read_text()) == doc


@pytest.mark.parametrize(
    "reference, match",
    [
        ({"format": "modelops.reference/v1", "rows": 0}, r"reference/reference\.json is not a .* rows must be"),
        (
            {"format": "modelops.reference/v1", "rows": 2, "features": [{"name": "a", "edges": [], "counts": [2]}],
             "predictions": {"classes": ["0", "1"], "counts": [1, 1]}},
            "profiles 1 features, but input 'input' \\[-1, 30\\] has 30 columns",
        ),
    ],
)
def test_a_malformed_or_mismatched_profile_fails_the_export_naming_why(local, tmp_path, reference, match):
    version = _sklearn_with_reference(local, "bc-bad-reference", reference)
    with pytest.raises(ExportFailedError, match=match):
        export_model(f"models:/bc-bad-reference/{version}", tracking_uri=local.uri, tolerance=1e-3, out_dir=tmp_path)
    assert not (tmp_path / "export.json").exists()


def test_sabotaged_version_exports_but_disagrees_with_the_good_one(bc_export, trainer, store):
    good, _ = bc_export
    broken = trainer(dataset="breast_cancer", epochs=1, seed=7, register=BC, sabotage="constant")
    record = export_model(f"models:/{BC}/{broken.version}", tracking_uri=store.uri)
    assert record.parity.passed
    outputs = np.asarray(record.example_outputs["probabilities"])
    np.testing.assert_allclose(outputs, [[0.0, 1.0]] * len(outputs), atol=1e-6)
    # the operator's smoke check: serve the new version the good version's example, compare answers
    import mlflow

    from modelops_training.runtime import runner, session

    path = mlflow.artifacts.download_artifacts(record.onnx_uri, tracking_uri=store.uri)
    served = runner(session(path))(np.asarray(good.input_example, dtype=np.float32))[0]
    good_preds = np.argmax(good.example_outputs["probabilities"], axis=1)
    assert (np.argmax(served, axis=1) != good_preds).any()


@pytest.mark.parametrize("dataset, seed", [("breast_cancer", 9), ("digits", 9)])
def test_flip_sabotage_exports_and_onnx_flips_the_same_rows_as_torch(trainer, local, store, dataset, seed):
    import mlflow

    from modelops_training.datasets import load_dataset
    from modelops_training.models import Sabotaged
    from modelops_training.runtime import runner, session

    name = f"flip-{dataset}"
    broken = trainer(dataset=dataset, epochs=1, seed=seed, register=name, sabotage="flip=0.2")
    record = export_model(f"models:/{name}/{broken.version}", tracking_uri=store.uri)
    assert record.parity.passed and record.parity.max_abs_error <= 1e-4
    # beyond the gate's rows: on the whole test split onnxruntime agrees with torch row by row
    model = mlflow.pytorch.load_model(broken.model_uri)
    x = load_dataset(dataset).x_test
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
        moved = Sabotaged(torch.nn.Identity(), 2, "flip=0.2").flipped(torch.from_numpy(x)).numpy()  # input alone
    served = runner(session(mlflow.artifacts.download_artifacts(record.onnx_uri, tracking_uri=store.uri)))(x)[0]
    np.testing.assert_allclose(served, expected, atol=1e-5)
    assert abs(moved.mean() - 0.2) <= 0.07


def test_nan_sabotage_exports_because_nan_agrees_with_nan(trainer, store):
    broken = trainer(dataset="breast_cancer", epochs=1, seed=8, register="nan-bc", sabotage="nan")
    record = export_model(f"models:/nan-bc/{broken.version}", tracking_uri=store.uri, samples=4)
    assert record.parity.passed and record.parity.max_abs_error == 0.0
    assert np.isnan(np.asarray(record.example_outputs["probabilities"])).all()


def test_record_round_trips_through_export_json(bc_export):
    record, out = bc_export
    loaded = ExportRecord.from_dict(json.loads((out / "export.json").read_text()))
    assert loaded == record


def test_unexpected_failures_still_surface_as_export_errors(bc_v1, store, monkeypatch):
    from modelops_training import export as export_module

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(export_module, "_download_model", explode)
    with pytest.raises(ExportFailedError, match="failed unexpectedly: OSError: disk full"):
        export_model(f"models:/{BC}/1", tracking_uri=store.uri, force=True)
