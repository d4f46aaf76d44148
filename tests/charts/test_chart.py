"""The chart without a cluster: lint, rendering with default / all-on / namespaced values, the CRDs kept
identical to crds/, least-privilege RBAC, hardened pods, values validated by values.schema.json,
dashboards as sidecar ConfigMaps generated from code, and alert rules that promtool accepts."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess

import pytest
import yaml

from .conftest import (
    ALL_ON,
    CHART,
    NAMESPACE,
    NAMESPACED,
    RELEASE,
    ROOT,
    VALUES_FILES,
    env_of,
    find,
    helm,
    one,
    pod_spec,
    render,
    template_args,
)

OPERATOR = f"{RELEASE}-operator"
MLFLOW = f"{RELEASE}-mlflow"


def load_generator():
    spec = importlib.util.spec_from_file_location("dashboards_generate", CHART / "dashboards/generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("values", VALUES_FILES.values(), ids=VALUES_FILES.keys())
def test_lint_strict_passes(values):
    args = ["lint", "--strict", str(CHART)] + (["-f", str(values)] if values else [])
    out = helm(*args).stdout
    assert "0 chart(s) failed" in out


def test_chart_crds_are_the_top_level_crds_plus_kopf_peering():
    chart_crds = sorted(p.name for p in (CHART / "crds").iterdir())
    top = sorted(p.name for p in (ROOT / "crds").iterdir())
    assert chart_crds == sorted([*top, "kopf.dev_peerings.yaml"])
    for name in top:
        assert (CHART / "crds" / name).read_bytes() == (ROOT / "crds" / name).read_bytes(), (
            f"charts/modelops/crds/{name} drifted from crds/{name}: cp crds/{name} charts/modelops/crds/")
    peering = list(yaml.safe_load_all((CHART / "crds/kopf.dev_peerings.yaml").read_text()))
    assert {(c["metadata"]["name"], c["spec"]["scope"]) for c in peering} == {
        ("clusterkopfpeerings.kopf.dev", "Cluster"), ("kopfpeerings.kopf.dev", "Namespaced")}
    for crd in peering:
        status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
        assert status["x-kubernetes-preserve-unknown-fields"] is True  # kopf keeps peers in status


def test_default_install_is_a_working_stack():
    docs = render()
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    assert kinds == sorted([
        f"Deployment/{OPERATOR}", f"Service/{OPERATOR}", f"ServiceAccount/{OPERATOR}",
        f"ClusterRole/{OPERATOR}", f"ClusterRoleBinding/{OPERATOR}",
        f"ClusterRole/{OPERATOR}-crd-reader", f"ClusterRoleBinding/{OPERATOR}-crd-reader",
        f"Deployment/{MLFLOW}", f"Service/{MLFLOW}", f"PersistentVolumeClaim/{MLFLOW}",
        f"ServiceMonitor/{OPERATOR}", f"PodMonitor/{RELEASE}-inference", f"PrometheusRule/{RELEASE}",
        f"ConfigMap/{RELEASE}-dashboard-inference", f"ConfigMap/{RELEASE}-dashboard-operator",
        f"Pod/{RELEASE}-test-operator", f"Pod/{RELEASE}-test-mlflow",
    ])
    operator = one(docs, "Deployment", OPERATOR)
    assert operator["spec"]["replicas"] == 1 and operator["spec"]["strategy"] == {"type": "Recreate"}
    [container] = pod_spec(operator)["containers"]
    env = env_of(container)
    tracking = f"http://{MLFLOW}.{NAMESPACE}.svc:5000"
    assert env["MLFLOW_TRACKING_URI"] == env["MODELOPS_POD_TRACKING_URI"] == tracking
    assert env["MODELOPS_SERVING_IMAGE"] == "modelops/inference:0.1.0"
    assert env["MODELOPS_ALIAS_POLL_SECONDS"] == "30"
    assert (env["MODELOPS_API_PORT"], env["MODELOPS_HEALTH_PORT"]) == ("8081", "8080")
    unset = {"MODELOPS_WATCH_NAMESPACE", "MODELOPS_PEERING", "MODELOPS_PRIORITY", "MODELOPS_WEBHOOK_SECRET"}
    assert not unset & set(env)
    assert "command" not in container and "args" not in container  # the image's entrypoint runs
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    service = one(docs, "Service", OPERATOR)
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"api": 8081, "health": 8080}
    assert service["spec"]["selector"] == operator["spec"]["selector"]["matchLabels"]


def test_monitoring_objects_only_where_the_prometheus_operator_api_is_served():
    kinds = {d["kind"] for d in render(monitoring=False)}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert "ConfigMap" in kinds  # dashboards do not need the Prometheus Operator


def test_pod_monitor_selects_every_inference_pod_in_any_namespace():
    monitor = one(render(), "PodMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    # the labels and port modelops_operator.manifests gives inference pods
    from modelops_operator import manifests
    assert monitor["spec"]["selector"]["matchLabels"].items() <= manifests.labels("x").items()
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    service_monitor = one(render(ALL_ON), "ServiceMonitor")
    assert service_monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert service_monitor["spec"]["endpoints"][0]["port"] == "api"


def test_two_replicas_are_a_peered_statefulset_with_distinct_priorities():
    docs = render(ALL_ON)
    assert not find(docs, "Deployment", OPERATOR)
    sts = one(docs, "StatefulSet", OPERATOR)
    assert sts["spec"]["replicas"] == 2
    env = env_of(pod_spec(sts)["containers"][0])
    assert env["MODELOPS_PRIORITY"] == {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}}
    peering = one(docs, "ClusterKopfPeering")
    assert env["MODELOPS_PEERING"] == peering["metadata"]["name"]
    rules = one(docs, "ClusterRole", OPERATOR)["rules"]
    assert {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings"],
            "verbs": ["get", "list", "watch", "patch"]} in rules
    secret = one(docs, "Secret")
    assert env["MODELOPS_WEBHOOK_SECRET"] == {"secretKeyRef": {"name": secret["metadata"]["name"],
                                                               "key": "webhook-secret"}}
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert len(find(docs, "NetworkPolicy")) == 2


def test_replicas_without_peering_are_refused():
    res = helm(*template_args(sets={"operator.replicas": "2"}), check=False)
    assert res.returncode != 0 and "peering" in res.stderr


def test_namespaced_mode_uses_a_role_in_the_watched_namespace():
    docs = render(NAMESPACED)
    role = one(docs, "Role", OPERATOR)
    binding = one(docs, "RoleBinding", OPERATOR)
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == NAMESPACE
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert "namespaces" not in resources and "kopfpeerings" in resources
    [scanning] = find(docs, "ClusterRole")
    assert scanning["metadata"]["name"] == f"{OPERATOR}-crd-reader"
    # namespaced kopf lists and watches Namespaces to match its own (read-only)
    assert {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]} in scanning["rules"]
    peering = one(docs, "KopfPeering")
    assert peering["metadata"]["namespace"] == NAMESPACE
    env = env_of(pod_spec(one(docs, "StatefulSet"))["containers"][0])
    assert env["MODELOPS_WATCH_NAMESPACE"] == NAMESPACE
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.example.com:5000"
    assert not find(docs, "Deployment", MLFLOW) and not find(docs, "Pod", f"{RELEASE}-test-mlflow")


def test_mlflow_disabled_without_a_tracking_uri_is_refused():
    res = helm(*template_args(sets={"mlflow.enabled": "false"}), check=False)
    assert res.returncode != 0 and "trackingUri" in res.stderr


def test_rbac_is_least_privilege():
    rules = one(render(), "ClusterRole", OPERATOR)["rules"]
    granted = {(g, r): set(rule["verbs"]) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]}
    write = {"get", "list", "watch", "create", "patch", "delete"}
    assert granted == {
        ("modelops.io", "modeldeployments"): {"get", "list", "watch", "patch"},
        ("modelops.io", "modeldeployments/status"): {"get", "patch"},
        ("apps", "deployments"): write,
        ("", "services"): write,
        ("autoscaling", "horizontalpodautoscalers"): write,
        ("networking.k8s.io", "ingresses"): write,
        ("policy", "poddisruptionbudgets"): write,
        ("", "pods"): {"get", "list", "watch"},
        ("", "pods/status"): {"patch"},
        ("", "events"): {"create", "patch"},
        ("events.k8s.io", "events"): {"create", "patch"},
    }  # no namespaces: cluster-wide kopf does not scan them (kopf/_core/reactor/observation.py)
    crd = one(render(), "ClusterRole", f"{OPERATOR}-crd-reader")["rules"]
    assert crd == [{"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
                    "verbs": ["get", "list", "watch"]}]


@pytest.mark.parametrize("values", VALUES_FILES.values(), ids=VALUES_FILES.keys())
def test_every_pod_is_hardened_and_has_resources(values):
    workloads = [d for d in render(values) if d["kind"] in ("Deployment", "StatefulSet", "Pod")]
    assert workloads
    for w in workloads:
        spec, name = pod_spec(w), f"{w['kind']}/{w['metadata']['name']}"
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == 10001, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], name


def test_image_pull_policy_and_tags_are_values():
    docs = render(sets={"operator.image.tag": "dev", "operator.image.pullPolicy": "Never",
                        "operator.servingImage.tag": "dev"})
    for w in [one(docs, "Deployment", OPERATOR), one(docs, "Deployment", MLFLOW), *find(docs, "Pod")]:
        [c] = pod_spec(w)["containers"]
        assert (c["image"], c["imagePullPolicy"]) == ("modelops/operator:dev", "Never")  # MLflow reuses it
    env = env_of(pod_spec(one(docs, "Deployment", OPERATOR))["containers"][0])
    assert env["MODELOPS_SERVING_IMAGE"] == "modelops/inference:dev"


def test_mlflow_serves_artifacts_and_accepts_its_service_names():
    docs = render()
    [c] = pod_spec(one(docs, "Deployment", MLFLOW))["containers"]
    assert c["command"] == ["mlflow"] and "--serve-artifacts" in c["args"]
    hosts = next(a for a in c["args"] if a.startswith("--allowed-hosts=")).split("=", 1)[1].split(",")
    for name in (MLFLOW, f"{MLFLOW}.{NAMESPACE}", f"{MLFLOW}.{NAMESPACE}.svc",
                 f"{MLFLOW}.{NAMESPACE}.svc.cluster.local"):
        assert name in hosts and f"{name}:*" in hosts
    assert {"localhost:*", "10.*", "192.168.*", "172.16.*", "172.31.*"} <= set(hosts)
    env = env_of(c)
    assert env["MLFLOW_BACKEND_STORE_URI"] == "sqlite:////mlflow/mlflow.db"
    assert env["MLFLOW_ARTIFACTS_DESTINATION"] == "/mlflow/artifacts"
    assert c["startupProbe"]["httpGet"]["path"] == "/health"  # exempt from the Host check
    volumes = {v["name"]: v for v in pod_spec(one(docs, "Deployment", MLFLOW))["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == MLFLOW
    pvc = one(docs, "PersistentVolumeClaim")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_mlflow_without_persistence_uses_an_empty_dir():
    docs = render(sets={"mlflow.persistence.enabled": "false"})
    assert not find(docs, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in pod_spec(one(docs, "Deployment", MLFLOW))["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}


def test_mlflow_external_store_credentials_come_from_a_secret():
    docs = render(sets={"mlflow.existingSecret": "mlflow-store", "mlflow.backendStoreUriSecretKey": "uri",
                        "mlflow.artifactsDestination": "s3://bucket/mlflow"})
    [c] = pod_spec(one(docs, "Deployment", MLFLOW))["containers"]
    env = env_of(c)
    assert env["MLFLOW_BACKEND_STORE_URI"] == {"secretKeyRef": {"name": "mlflow-store", "key": "uri"}}
    assert env["MLFLOW_ARTIFACTS_DESTINATION"] == "s3://bucket/mlflow"
    assert c["envFrom"] == [{"secretRef": {"name": "mlflow-store"}}]


@pytest.mark.parametrize("bad", [
    {"operator.replicas": "0"},
    {"operator.image.pullPolicy": "Sometimes"},
    {"monitoring.alerts.latencyBudgetBurn.latencySeconds": "0.3"},
    {"monitoring.alerts.highErrorRate.window": "five minutes"},
    {"mlflow.persistence.size": "lots"},
    {"operator.replicaz": "1"},
], ids=lambda b: next(iter(b)))
def test_schema_rejects_bad_values(bad):
    res = helm(*template_args(sets=bad), check=False)
    assert res.returncode != 0 and "schema" in res.stderr.lower(), res.stderr


def test_dashboards_are_sidecar_configmaps_with_untouched_json():
    docs = render(ALL_ON)
    maps = find(docs, "ConfigMap")
    assert {m["metadata"]["name"] for m in maps} == {f"{RELEASE}-dashboard-inference", f"{RELEASE}-dashboard-operator"}
    for m in maps:
        assert m["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert m["metadata"]["annotations"] == {"grafana_folder": "modelops"}
        [(key, text)] = m["data"].items()
        name = key.removeprefix("modelops-").removesuffix(".json")
        assert json.loads(text) == json.loads((CHART / f"dashboards/{name}.json").read_text())
    inference = find(docs, "ConfigMap", f"{RELEASE}-dashboard-inference")[0]["data"]["modelops-inference.json"]
    assert "{{model_name}} v{{model_version}}" in inference and "$__rate_interval" in inference


def test_committed_dashboards_are_the_generators_output():
    generator = load_generator()
    for name, build in generator.DASHBOARDS.items():
        committed = (CHART / f"dashboards/{name}.json").read_text()
        assert committed == generator.render(build), (
            f"dashboards/{name}.json is stale: run .venv/bin/python charts/modelops/dashboards/generate.py")


def test_alert_annotations_keep_prometheus_templates():
    rule = one(render(), "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {
        "ModelopsInferenceHighErrorRate", "ModelopsInferenceLatencyBudgetBurnFast",
        "ModelopsInferenceLatencyBudgetBurnSlow", "ModelopsReplicasAtMax", "ModelopsRollback",
        "ModelopsExportsFailing", "ModelopsOperatorDown"}
    summary = alerts["ModelopsInferenceHighErrorRate"]["annotations"]["summary"]
    assert "{{ $labels.model_name }}" in summary and "{{ $value | humanizePercentage }}" in summary
    assert f'up{{job="{OPERATOR}", namespace="{NAMESPACE}"}}' in alerts["ModelopsOperatorDown"]["expr"]
    for alert in alerts.values():
        assert alert["labels"]["severity"] in ("critical", "warning")


@pytest.mark.parametrize("values", [None, ALL_ON], ids=["default", "all-on"])
def test_promtool_accepts_the_rendered_rules(values, tmp_path):
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool (Debian's prometheus package) not installed: run `make setup`")
    rule = one(render(values), "PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    res = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS: 7 rules found" in res.stdout


def test_notes_tell_the_next_step_and_the_crd_upgrade_caveat():
    res = helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client")
    notes = res.stdout.split("NOTES:", 1)[1]
    assert f"rollout status deployment/{OPERATOR}" in notes
    assert f"helm test {RELEASE}" in notes
    assert "Helm never upgrades the CRDs" in notes


def helm3() -> str:
    exe = os.environ.get("MODELOPS_HELM3") or str(ROOT / ".tools/helm3/helm")
    if not os.access(exe, os.X_OK):
        pytest.skip("no Helm 3 binary: `make helm3` builds one from the Go module proxy into .tools/helm3")
    return exe


@pytest.mark.parametrize("values", VALUES_FILES.values(), ids=VALUES_FILES.keys())
def test_helm3_lints_and_renders_exactly_like_helm4(values):
    # a go-install build of Helm 3 defaults to Kubernetes 1.20 (no release ldflags): pin a version
    kube = ["--kube-version", "1.34.0"]
    args = ["lint", "--strict", str(CHART), *kube] + (["-f", str(values)] if values else [])
    res = subprocess.run([helm3(), *args], capture_output=True, text=True)
    assert res.returncode == 0 and "0 chart(s) failed" in res.stdout, res.stdout + res.stderr
    three = subprocess.run([helm3(), *template_args(values), *kube], capture_output=True, text=True)
    assert three.returncode == 0, three.stderr
    assert three.stdout == helm(*template_args(values), *kube).stdout
