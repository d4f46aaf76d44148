import json
import os

import numpy as np
import pytest

from modelops_training.datasets import load_dataset
from modelops_training.errors import TrainingError
from modelops_training.models import build_model
from modelops_training.train import TrainConfig, fit, seed_everything, train
from tests.training.conftest import BC, DIGITS


def _client(store):
    from mlflow import MlflowClient

    return MlflowClient(store.uri, registry_uri=store.uri)


@pytest.mark.parametrize(
    "fixture, name, epochs, shape", [("bc_v1", BC, 3, [-1, 30]), ("digits_v1", DIGITS, 2, [-1, 1, 8, 8])]
)
def test_training_logs_metrics_plots_and_a_registered_model(request, local, store, fixture, name, epochs, shape):
    from mlflow.models import Model

    result = request.getfixturevalue(fixture)
    mc = _client(store)
    run = mc.get_run(result.run_id)
    assert run.data.params["epochs"] == str(epochs)
    for metric in ("train_loss", "val_loss", "val_accuracy", "val_f1", "val_roc_auc"):
        assert [m.step for m in mc.get_metric_history(result.run_id, metric)] == list(range(1, epochs + 1))
    assert {"test_accuracy", "test_f1", "test_roc_auc", "test_loss"} <= set(run.data.metrics)
    assert result.test_metrics["test_accuracy"] > 0.5
    plots = {a.path for a in mc.list_artifacts(result.run_id, "plots")}
    assert plots == {"plots/confusion_matrix.png", "plots/learning_curves.png"}

    assert (result.version, result.registered_uri) == ("1", f"models:/{name}/1")
    assert str(mc.get_model_version_by_alias(name, "champion").version) == "1"
    spec = Model.load(result.registered_uri).signature
    assert list(spec.inputs.inputs[0].shape) == shape
    assert spec.inputs.inputs[0].type == np.dtype("float32")


def test_input_example_covers_every_class(local, bc_v1, digits_v1):
    import mlflow
    from mlflow.models import Model

    for result, classes in ((bc_v1, 2), (digits_v1, 10)):
        local = mlflow.artifacts.download_artifacts(result.model_uri, tracking_uri=result.tracking_uri)
        example = Model.load(local).load_input_example(local)
        model = mlflow.pytorch.load_model(local)
        import torch

        probs = model(torch.from_numpy(np.asarray(example, dtype=np.float32))).detach().numpy()
        assert probs.shape == (len(example), classes)
        assert len(example) >= classes
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "fixture, dataset, row_shape", [("bc_v1", "breast_cancer", [30]), ("digits_v1", "digits", [1, 8, 8])]
)
def test_every_run_logs_its_labelled_test_split_for_replay(request, local, fixture, dataset, row_shape):
    import mlflow

    from modelops_training.replay_set import EVALUATION_ARTIFACT, parse

    result = request.getfixturevalue(fixture)
    text = mlflow.artifacts.load_text(f"runs:/{result.run_id}/{EVALUATION_ARTIFACT}")
    doc = json.loads(text)
    assert doc["format"] == "modelops.replay/v1" and set(doc) == {"format", "inputs", "labels"}
    assert [(t["name"], t["datatype"]) for t in doc["inputs"]] == [("input", "FP32")]
    evaluation = parse(text)
    data = load_dataset(dataset)
    n = int(_client(local).get_run(result.run_id).data.params["test_size"])
    assert doc["inputs"][0]["shape"] == [n, *row_shape] and len(doc["labels"]) == n
    np.testing.assert_array_equal(evaluation.inputs, data.x_test)  # bit for bit, through JSON
    np.testing.assert_array_equal(evaluation.labels, data.y_test)


@pytest.mark.parametrize("fixture, dataset", [("bc_v1", "breast_cancer"), ("digits_v1", "digits")])
def test_every_run_logs_the_reference_profile_of_its_training_split(request, local, fixture, dataset):
    import mlflow
    import torch

    from modelops_training.reference import ARTIFACT, parse, predicted_classes

    result = request.getfixturevalue(fixture)
    doc = parse(mlflow.artifacts.load_text(f"runs:/{result.run_id}/{ARTIFACT}"))
    data = load_dataset(dataset)
    assert doc["format"] == "modelops.reference/v1" and doc["rows"] == len(data.x_train)
    names = [f["name"] for f in doc["features"]]
    if dataset == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        assert names == list(load_breast_cancer().feature_names) and names[0] == "mean radius"
    else:
        assert names == [f"x{i}" for i in range(64)]  # the flattened 1x8x8 image
    assert all(sum(f["counts"]) == len(data.x_train) for f in doc["features"])
    model = mlflow.pytorch.load_model(result.model_uri)
    with torch.no_grad():
        scores = model(torch.from_numpy(data.x_train)).numpy()
    assert (doc["predictions"]["classes"], doc["predictions"]["counts"]) == predicted_classes(scores)


def test_same_seed_same_training():
    data = load_dataset("breast_cancer", seed=5)
    histories = []
    for _ in range(2):
        gen = seed_everything(5)
        model = build_model("breast_cancer", data.input_shape, data.num_classes)
        model.fit_scaler(data.x_train)
        histories.append(fit(model, data, TrainConfig("breast_cancer", epochs=2, progress=False), gen))
    assert histories[0] == histories[1]


def test_alias_without_register_is_refused(store):
    with pytest.raises(TrainingError, match="need --register"):
        train(TrainConfig("digits", epochs=1, alias="champion", tracking_uri=store.uri))


def test_training_leaves_mlflows_process_wide_uris_as_it_found_them(trainer, monkeypatch):
    """A long-lived caller must not inherit the URI of its last training (it once sent a later
    test's registry calls to a stopped server)."""
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    mlflow.set_tracking_uri(None)
    trainer(dataset="breast_cancer", epochs=1)
    assert not mlflow.is_tracking_uri_set()
    assert "MLFLOW_REGISTRY_URI" not in os.environ


def test_a_bad_sabotage_is_refused_before_training(store):
    with pytest.raises(TrainingError, match="flip fraction must be a number with 0 < fraction <= 1"):
        train(TrainConfig("digits", epochs=1, sabotage="flip=2", tracking_uri=store.uri))
