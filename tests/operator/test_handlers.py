import kopf
from kopf._cogs.structs.references import Resource

from modelops_operator.handlers import filter_watches
from modelops_operator.manifests import managed_selector, serving_pods_selector

PODS = Resource("", "v1", "pods", kind="Pod", singular="pod", namespaced=True)
DEPLOYMENTS = Resource("apps", "v1", "deployments", kind="Deployment", singular="deployment", namespaced=True)
MODEL_DEPLOYMENTS = Resource("modelops.io", "v1alpha1", "modeldeployments", kind="ModelDeployment",
                             singular="modeldeployment", namespaced=True)


def test_pod_and_deployment_watches_carry_a_server_side_label_selector():
    """kopf passes settings.watching.label_selectors to the API server as labelSelector on list and watch."""
    settings = kopf.OperatorSettings()
    filter_watches(settings)
    selectors = settings.watching.label_selectors
    assert list(selectors.collect(PODS)) == [serving_pods_selector()]
    assert list(selectors.collect(DEPLOYMENTS)) == [managed_selector()]
    assert list(selectors.collect(MODEL_DEPLOYMENTS)) == []  # every ModelDeployment is the operator's


def test_the_job_watch_sees_retrain_jobs_only():
    """Export Jobs are followed by the reconcile that started them; only retrain Jobs stream to the operator."""
    jobs = Resource("batch", "v1", "jobs", kind="Job", singular="job", namespaced=True)
    settings = kopf.OperatorSettings()
    filter_watches(settings)
    assert list(settings.watching.label_selectors.collect(jobs)) == ["modelops.io/retrain-of"]
