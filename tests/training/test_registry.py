import pytest

from modelops_training.errors import TrainingError
from modelops_training.registry import alias_version, lower_is_better, promote_if_better, register


@pytest.fixture
def versions(store, bc_v1):
    """Registers one version per metrics dict, each from a fresh run; cheap (no training)."""
    from mlflow import MlflowClient

    mc = MlflowClient(store.uri, registry_uri=store.uri)
    name = f"promo-{len(mc.search_registered_models(max_results=1000))}"
    exp = mc.get_run(bc_v1.run_id).info.experiment_id

    def make(**metrics) -> str:
        run = mc.create_run(exp)
        for key, value in metrics.items():
            mc.log_metric(run.info.run_id, key, value)
        return register(bc_v1.model_uri, name, run_id=run.info.run_id, tracking_uri=store.uri)

    make.name = name
    return make


def test_first_promotion_sets_the_alias(store, versions):
    v1 = versions(test_f1=0.9)
    decision = promote_if_better(versions.name, v1, alias="champion", metric="test_f1", tracking_uri=store.uri)
    assert decision.promoted and "not set" in decision.reason
    assert alias_version(versions.name, "champion", tracking_uri=store.uri) == v1


def test_alias_moves_only_to_a_better_version(store, versions):
    def promote(v):
        return promote_if_better(versions.name, v, alias="champion", metric="test_f1", tracking_uri=store.uri)

    v1, worse, better = versions(test_f1=0.9), versions(test_f1=0.8), versions(test_f1=0.95)
    promote(v1)
    kept = promote(worse)
    assert not kept.promoted and kept.previous_version == v1 and "does not beat" in kept.reason
    assert alias_version(versions.name, "champion", tracking_uri=store.uri) == v1
    moved = promote(better)
    assert moved.promoted and moved.previous_value == pytest.approx(0.9)
    assert alias_version(versions.name, "champion", tracking_uri=store.uri) == better


def test_loss_metrics_promote_when_lower(store, versions):
    v1, v2 = versions(test_loss=0.5), versions(test_loss=0.3)
    promote_if_better(versions.name, v1, alias="best", metric="test_loss", tracking_uri=store.uri)
    assert promote_if_better(versions.name, v2, alias="best", metric="test_loss", tracking_uri=store.uri).promoted
    assert lower_is_better("test_loss") and not lower_is_better("test_f1")


def test_an_unknown_metric_is_an_error_not_a_silent_no(store, versions):
    v1 = versions(test_f1=0.9)
    with pytest.raises(TrainingError, match="no metric 'test_nope'"):
        promote_if_better(versions.name, v1, alias="champion", metric="test_nope", tracking_uri=store.uri)
