"""The chart without a cluster: lint, rendering with default / all-on / namespaced / auth values, the CRDs
kept identical to crds/, least-privilege RBAC, hardened pods, export Job settings and MLflow auth wired
from values with credentials only from Secrets, values validated by values.schema.json, dashboards as
sidecar ConfigMaps generated from code, and alert rules that promtool accepts."""

from __future__ import annotations

import base64
import configparser
import importlib.util
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from .conftest import (
    ALL_ON,
    AUTH,
    CHART,
    MONITORING_APIS,
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
        f"AlertmanagerConfig/{RELEASE}",
        f"ConfigMap/{RELEASE}-dashboard-inference", f"ConfigMap/{RELEASE}-dashboard-operator",
        f"Pod/{RELEASE}-test-operator", f"Pod/{RELEASE}-test-mlflow", f"Secret/{OPERATOR}-replay-key",
        f"Secret/{RELEASE}-alert-webhook",
    ])
    operator = one(docs, "Deployment", OPERATOR)
    assert operator["spec"]["replicas"] == 1 and operator["spec"]["strategy"] == {"type": "Recreate"}
    [container] = pod_spec(operator)["containers"]
    env = env_of(container)
    tracking = f"http://{MLFLOW}.{NAMESPACE}.svc:5000"
    assert env["MLFLOW_TRACKING_URI"] == env["MODELOPS_POD_TRACKING_URI"] == tracking
    assert env["MODELOPS_SERVING_IMAGE"] == "modelops/inference:0.1.0"
    assert env["MODELOPS_EXPORT_IMAGE"] == "modelops/training:0.1.0"
    assert (env["MODELOPS_MAX_CONCURRENT_EXPORTS"], env["MODELOPS_EXPORT_DEADLINE_SECONDS"],
            env["MODELOPS_EXPORT_TTL_SECONDS"], env["MODELOPS_EXPORT_NETWORK_POLICY"]) == ("2", "900", "3600", "true")
    assert env["MODELOPS_ALIAS_POLL_SECONDS"] == "30"
    assert env["MODELOPS_INGRESS_DOMAIN"] == "modelops.localhost"
    assert (env["MODELOPS_API_PORT"], env["MODELOPS_HEALTH_PORT"]) == ("8081", "8080")
    # only its own tracking URI allowed; MLflow without auth: no credentials
    unset = {"MODELOPS_WATCH_NAMESPACE", "MODELOPS_PEERING", "MODELOPS_PRIORITY", "MODELOPS_WEBHOOK_SECRET",
             "MODELOPS_ALLOWED_TRACKING_URIS", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
             "MLFLOW_TRACKING_TOKEN", "MODELOPS_GATEWAY"}
    assert not unset & set(env)
    assert "command" not in container and "args" not in container  # the image's entrypoint runs
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    service = one(docs, "Service", OPERATOR)
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"api": 8081, "health": 8080}
    assert service["spec"]["selector"] == operator["spec"]["selector"]["matchLabels"]


def test_monitoring_objects_only_where_the_prometheus_operator_api_is_served():
    kinds = {d["kind"] for d in render(monitoring=False)}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule", "AlertmanagerConfig"}
    assert "ConfigMap" in kinds  # dashboards do not need the Prometheus Operator


def test_alertmanager_config_only_where_its_v1alpha1_kind_is_served_and_enabled():
    v1_only = [a for a in MONITORING_APIS if "/v1/" in a]
    docs = [d for d in yaml.safe_load_all(helm(*template_args(monitoring=False), *[
        arg for api in v1_only for arg in ("--api-versions", api)]).stdout) if d]
    assert {"PrometheusRule"} <= {d["kind"] for d in docs} and not find(docs, "AlertmanagerConfig")
    assert not find(render(sets={"monitoring.alertmanagerConfig.enabled": "false"}), "AlertmanagerConfig")


def test_alertmanager_config_routes_the_drift_alerts_to_the_operators_webhook_with_the_token_secret():
    config = one(render(sets={"operator.apiPort": "9090", "monitoring.alertmanagerConfig.repeatInterval": "4h"}),
                 "AlertmanagerConfig")
    assert config["apiVersion"] == "monitoring.coreos.com/v1alpha1"
    assert config["metadata"]["namespace"] == NAMESPACE
    route = config["spec"]["route"]
    assert route["matchers"] == [
        {"name": "alertname", "matchType": "=~", "value": "ModelopsFeatureDrift|ModelopsPredictionDrift"}]
    assert (route["groupBy"], route["repeatInterval"]) == (["namespace", "model_name"], "4h")
    [receiver] = config["spec"]["receivers"]
    assert receiver["name"] == route["receiver"]
    [webhook] = receiver["webhookConfigs"]
    assert webhook["url"] == f"http://{OPERATOR}.{NAMESPACE}.svc:9090/webhooks/alertmanager"
    assert webhook["httpConfig"]["authorization"] == {
        "type": "Bearer", "credentials": {"name": f"{RELEASE}-alert-webhook", "key": "token"}}
    # the Secret's name follows the fullname, as the operator's
    other = one(render(sets={"fullnameOverride": "mo"}), "AlertmanagerConfig")
    credentials = other["spec"]["receivers"][0]["webhookConfigs"][0]["httpConfig"]["authorization"]["credentials"]
    assert credentials["name"] == "mo-alert-webhook"
    assert other["spec"]["receivers"][0]["webhookConfigs"][0]["url"].startswith(f"http://mo-operator.{NAMESPACE}.svc:")


def test_pod_monitor_selects_every_inference_pod_in_any_namespace_and_labels_its_track():
    monitor = one(render(), "PodMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    # the labels and port modelops_operator.manifests gives inference pods
    from modelops_operator import manifests
    assert monitor["spec"]["selector"]["matchLabels"].items() <= manifests.labels("x").items()
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    # a canary pod's track label becomes the target label `track` (Prometheus' meta label for a pod label:
    # its name with every character outside [a-zA-Z0-9_] as "_")
    meta = "__meta_kubernetes_pod_label_" + re.sub(r"\W", "_", manifests.TRACK_LABEL)
    assert endpoint["relabelings"] == [{"sourceLabels": [meta], "targetLabel": "track"}]
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
    secret = one(docs, "Secret", f"{RELEASE}-webhook")
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


WRITE = {"get", "list", "watch", "create", "patch", "delete"}
OPERATOR_GRANTS = {
    ("modelops.io", "modeldeployments"): {"get", "list", "watch", "patch"},
    ("modelops.io", "modeldeployments/status"): {"get", "patch"},
    ("apps", "deployments"): WRITE,
    ("", "services"): WRITE,
    ("autoscaling", "horizontalpodautoscalers"): WRITE,
    ("networking.k8s.io", "ingresses"): WRITE,
    # canary releases' HTTPRoutes; nothing else of the Gateway API (no Gateways, no route status)
    ("gateway.networking.k8s.io", "httproutes"): WRITE,
    ("policy", "poddisruptionbudgets"): WRITE,
    ("batch", "jobs"): WRITE,  # export Jobs
    ("", "pods"): {"get", "list", "watch"},
    ("", "pods/log"): {"get"},  # a failed export's log tail
    ("", "pods/status"): {"patch"},
    # each ModelDeployment's input-sample token: created once, never read (no get: no Secret is readable)
    ("", "secrets"): {"create"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
    # the export Jobs' egress policy, one per namespace: applied and removed, never watched
    ("networking.k8s.io", "networkpolicies"): {"get", "list", "create", "patch", "delete"},
}


def granted(role: dict) -> dict[tuple[str, str], set[str]]:
    return {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}


def test_rbac_is_least_privilege():
    # no namespaces: cluster-wide kopf does not scan them (kopf/_core/reactor/observation.py)
    assert granted(one(render(), "ClusterRole", OPERATOR)) == OPERATOR_GRANTS
    crd = one(render(), "ClusterRole", f"{OPERATOR}-crd-reader")["rules"]
    assert crd == [{"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
                    "verbs": ["get", "list", "watch"]}]


def test_namespaced_rbac_grants_the_same_in_the_watched_namespace():
    role = one(render(NAMESPACED), "Role", OPERATOR)
    peering = {("kopf.dev", "kopfpeerings"): {"get", "list", "watch", "patch"}}
    assert granted(role) == {**OPERATOR_GRANTS, **peering}


@pytest.mark.parametrize(("sets", "expected"), [
    ({"operator.gateway.name": "modelops", "operator.gateway.namespace": "kube-system",
      "operator.gateway.sectionName": "web"}, "kube-system/modelops/web"),
    ({"operator.gateway.name": "public", "operator.gateway.namespace": "gateways"}, "gateways/public"),
], ids=["with-listener", "whole-gateway"])
def test_operator_gateway_is_the_default_parent_ref_in_the_operator_env(sets, expected):
    env = env_of(pod_spec(one(render(sets=sets), "Deployment", OPERATOR))["containers"][0])
    assert env["MODELOPS_GATEWAY"] == expected


def test_the_all_on_values_attach_routes_to_the_local_clusters_shared_gateway():
    from ..support import SHARED_GATEWAY

    env = env_of(pod_spec(one(render(ALL_ON), "StatefulSet", OPERATOR))["containers"][0])
    assert env["MODELOPS_GATEWAY"] == SHARED_GATEWAY.env == "kube-system/modelops/web"


@pytest.mark.parametrize("sets", [
    {"operator.gateway.name": "modelops"},
    {"operator.gateway.namespace": "kube-system"},
    {"operator.gateway.sectionName": "web"},
], ids=["name-without-namespace", "namespace-without-name", "listener-without-name"])
def test_a_partial_operator_gateway_is_refused(sets):
    res = helm(*template_args(sets=sets), check=False)
    assert res.returncode != 0 and "operator.gateway" in res.stderr, res.stderr


def test_no_network_policy_rights_when_export_jobs_get_no_policy():
    sets = {"exports.networkPolicy.enabled": "false"}
    rules = granted(one(render(sets=sets), "ClusterRole", OPERATOR))
    assert ("networking.k8s.io", "networkpolicies") not in rules
    assert rules == {k: v for k, v in OPERATOR_GRANTS.items() if k[1] != "networkpolicies"}
    env = env_of(pod_spec(one(render(sets=sets), "Deployment", OPERATOR))["containers"][0])
    assert env["MODELOPS_EXPORT_NETWORK_POLICY"] == "false"


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
                        "operator.servingImage.tag": "dev", "exportImage.tag": "dev"})
    for w in [one(docs, "Deployment", OPERATOR), *find(docs, "Pod")]:
        [c] = pod_spec(w)["containers"]
        assert (c["image"], c["imagePullPolicy"]) == ("modelops/operator:dev", "Never")
    # MLflow runs in the training image (full MLflow), the one export Jobs run in
    [c] = pod_spec(one(docs, "Deployment", MLFLOW))["containers"]
    assert (c["image"], c["imagePullPolicy"]) == ("modelops/training:dev", "Never")
    env = env_of(pod_spec(one(docs, "Deployment", OPERATOR))["containers"][0])
    assert env["MODELOPS_SERVING_IMAGE"] == "modelops/inference:dev"
    assert env["MODELOPS_EXPORT_IMAGE"] == "modelops/training:dev"
    own = render(sets={"mlflow.image.repository": "example.com/mlflow", "exportImage.tag": "dev"})
    [c] = pod_spec(one(own, "Deployment", MLFLOW))["containers"]
    assert c["image"] == "example.com/mlflow:0.1.0"  # its own repository: the appVersion, not the export tag


def test_export_job_settings_and_allowed_tracking_uris_are_values():
    env = env_of(pod_spec(one(render(AUTH), "Deployment", OPERATOR))["containers"][0])
    assert env["MODELOPS_EXPORT_IMAGE"] == "registry.example.com/modelops/training:dev"
    assert env["MODELOPS_MAX_CONCURRENT_EXPORTS"] == "4"
    assert env["MODELOPS_EXPORT_DEADLINE_SECONDS"] == "1800"
    assert env["MODELOPS_EXPORT_TTL_SECONDS"] == "600"
    assert env["MODELOPS_EXPORT_NETWORK_POLICY"] == "false"
    assert env["MODELOPS_ALLOWED_TRACKING_URIS"] == "https://mlflow.example.com,http://mlflow.team-a.svc:5000"


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


def ini(text: str) -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read_string(text)
    return dict(parser["mlflow"])


def secret_ref(name: str, key: str) -> dict:
    return {"secretKeyRef": {"name": name, "key": key}}


def test_mlflow_auth_runs_the_basic_auth_app_with_the_admin_from_a_secret():
    docs = render(AUTH)
    mlflow = one(docs, "Deployment", MLFLOW)
    [c] = pod_spec(mlflow)["containers"]
    assert "--app-name=basic-auth" in c["args"]
    env = env_of(c)
    assert env["MLFLOW_AUTH_ADMIN_USERNAME"] == secret_ref("mlflow-admin", "user")
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == secret_ref("mlflow-admin", "pass")
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == secret_ref("mlflow-admin", "flask-key")
    assert [s["metadata"]["name"] for s in find(docs, "Secret")] == [f"{OPERATOR}-replay-key",  # none for MLflow
                                                                      f"{RELEASE}-alert-webhook"]
    # MLflow reads the user store and the default permission only from its config file
    config = one(docs, "ConfigMap", f"{MLFLOW}-auth")
    settings = ini(config["data"]["basic_auth.ini"])
    assert settings["default_permission"] == "NO_PERMISSIONS"
    assert settings["database_uri"] == "sqlite:////mlflow/basic_auth.db"  # the data volume: writable
    assert settings["authorization_function"] == "mlflow.server.auth:authenticate_request_basic_auth"
    assert "admin_password" not in settings
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == "/etc/mlflow-auth/basic_auth.ini"
    assert mounts["/etc/mlflow-auth"] == "auth-config"
    assert mounts["/mlflow"] == "data"
    volumes = {v["name"]: v for v in pod_spec(mlflow)["volumes"]}
    assert volumes["auth-config"]["configMap"]["name"] == config["metadata"]["name"]
    assert volumes["data"] == {"name": "data", "emptyDir": {}}  # mlflow.persistence.enabled=false in AUTH
    # basic auth exempts /health, so the probes stay plain HTTP
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert "checksum/auth-config" in mlflow["spec"]["template"]["metadata"]["annotations"]


def test_the_operator_authenticates_with_the_admin_credentials_from_the_secret():
    env = env_of(pod_spec(one(render(AUTH), "Deployment", OPERATOR))["containers"][0])
    assert env["MLFLOW_TRACKING_USERNAME"] == secret_ref("mlflow-admin", "user")
    assert env["MLFLOW_TRACKING_PASSWORD"] == secret_ref("mlflow-admin", "pass")
    assert "MLFLOW_TRACKING_TOKEN" not in env


def test_mlflow_auth_without_a_secret_generates_one_kept_with_the_data():
    docs = render(sets={"mlflow.auth.enabled": "true"})
    secret = one(docs, "Secret", f"{MLFLOW}-auth")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["username"] == "admin"
    assert len(data["password"]) >= 12 and len(data["flask-secret-key"]) >= 32  # MLflow's password policy
    assert data["password"] != base64.b64decode(
        one(render(sets={"mlflow.auth.enabled": "true"}), "Secret", f"{MLFLOW}-auth")["data"]["password"]).decode()
    # the PVC outlives the release, and its user store holds the admin with this password
    assert secret["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    name = secret["metadata"]["name"]
    mlflow_env = env_of(pod_spec(one(docs, "Deployment", MLFLOW))["containers"][0])
    operator_env = env_of(pod_spec(one(docs, "Deployment", OPERATOR))["containers"][0])
    for server, client, key in (("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_TRACKING_USERNAME", "username"),
                                ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_TRACKING_PASSWORD", "password")):
        assert mlflow_env[server] == operator_env[client] == secret_ref(name, key)
    without_pvc = one(render(sets={"mlflow.auth.enabled": "true", "mlflow.persistence.enabled": "false"}), "Secret",
                      f"{MLFLOW}-auth")
    assert "annotations" not in without_pvc["metadata"]


def test_the_generated_auth_secret_reuses_what_the_cluster_holds():
    # helm template has no cluster, so lookup finds nothing here; test_cluster.py upgrades for real
    assert 'lookup "v1" "Secret"' in (CHART / "templates/mlflow.yaml").read_text()


def test_the_operator_reads_credentials_for_an_external_mlflow_from_a_secret():
    env = env_of(pod_spec(one(render(NAMESPACED, sets={"operator.trackingCredentialsSecret": "ext-mlflow"}),
                              "StatefulSet", OPERATOR))["containers"][0])
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        assert env[key] == {"secretKeyRef": {"name": "ext-mlflow", "key": key, "optional": True}}
    res = helm(*template_args(AUTH, sets={"operator.trackingCredentialsSecret": "ext-mlflow"}), check=False)
    assert res.returncode != 0 and "trackingCredentialsSecret" in res.stderr
    res = helm(*template_args(NAMESPACED, sets={"mlflow.auth.enabled": "true"}), check=False)
    assert res.returncode != 0 and "external MLflow" in res.stderr


SENSITIVE = ("PASSWORD", "SECRET", "TOKEN")


@pytest.mark.parametrize("values", VALUES_FILES.values(), ids=VALUES_FILES.keys())
def test_credentials_reach_containers_only_through_secret_refs(values):
    docs = render(values, sets={"mlflow.auth.enabled": "true"} if values is None else None)
    for w in [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Pod")]:
        for c in pod_spec(w)["containers"]:
            for e in c.get("env", []):
                if any(word in e["name"] for word in SENSITIVE):
                    assert set(e) == {"name", "valueFrom"} and "secretKeyRef" in e["valueFrom"], (
                        f"{w['metadata']['name']}: {e['name']} inline")
    for config in find(docs, "ConfigMap"):
        assert "password" not in json.dumps(config["data"]).lower(), config["metadata"]["name"]


def test_helm_test_checks_that_mlflow_refuses_anonymous_requests_and_accepts_the_operators_credentials():
    assert not find(render(), "Pod", f"{RELEASE}-test-mlflow-auth")
    docs = render(AUTH)
    pod = one(docs, "Pod", f"{RELEASE}-test-mlflow-auth")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    [c] = pod_spec(pod)["containers"]
    assert c["image"] == "modelops/operator:0.1.0" and c["command"] == ["python3", "-c"]  # has python3
    script = c["args"][0]
    compile(script, "test-mlflow-auth", "exec")
    assert f"http://{MLFLOW}.{NAMESPACE}.svc:5000/api/2.0/mlflow/experiments/search" in script
    assert '("anonymous request", status(), 401)' in script
    operator_env = env_of(pod_spec(one(docs, "Deployment", OPERATOR))["containers"][0])
    env = env_of(c)
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        assert env[key] == operator_env[key]  # the operator's own credentials
    # the registry check authenticates too when auth is on
    [registry] = pod_spec(one(docs, "Pod", f"{RELEASE}-test-mlflow"))["containers"]
    assert env_of(registry) == env
    compile(registry["args"][0], "test-mlflow", "exec")


@pytest.mark.parametrize("bad", [
    {"operator.replicas": "0"},
    {"operator.image.pullPolicy": "Sometimes"},
    {"monitoring.alerts.latencyBudgetBurn.latencySeconds": "0.3"},
    {"monitoring.alerts.highErrorRate.window": "five minutes"},
    {"mlflow.persistence.size": "lots"},
    {"monitoring.drift.window": "ten minutes"},
    {"monitoring.drift.minSamples": "-1"},
    {"monitoring.alerts.featureDrift.warning": "high"},
    {"monitoring.alertmanagerConfig.repeatInterval": "hourly"},
    {"operator.replicaz": "1"},
    {"exports.maxConcurrent": "0"},
    {"exports.activeDeadlineSeconds": "0"},
    {"exports.ttlSecondsAfterFinished": "-1"},
    {"operator.allowedTrackingUris[0]": "http://a:5000\\,http://b:5000"},  # one variable, comma-joined
    {"operator.allowedTrackingUris[0]": "mlflow.example.com"},
    {"mlflow.auth.defaultPermission": "ALL"},
    {"exportImage.repository": ""},
    {"operator.gateway.name": "gateways/public"},  # "/" separates MODELOPS_GATEWAY's parts
    {"operator.gateway.namespace": "Kube-System"},
    {"operator.gateway.port": "80"},
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
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert set(alerts) == {
        "ModelopsInferenceHighErrorRate", "ModelopsInferenceLatencyBudgetBurnFast",
        "ModelopsInferenceLatencyBudgetBurnSlow", "ModelopsReplicasAtMax", "ModelopsRollback",
        "ModelopsExportsFailing", "ModelopsOperatorDown", "ModelopsFeatureDrift", "ModelopsPredictionDrift"}
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
    assert "SUCCESS: 14 rules found" in res.stdout  # 7 alerts, 3 drift recording rules, 2 x 2 drift alerts


def drift_rules(values: dict | None = None, tmp_path=None) -> tuple[dict[str, str], list[dict]]:
    """The modelops-drift group rendered with `values` (a values file: --set would make 0.15 a string)."""
    path = None
    if values:
        path = tmp_path / "drift-values.yaml"
        path.write_text(yaml.safe_dump(values))
    [group] = [g for g in one(render(path), "PrometheusRule")["spec"]["groups"] if g["name"] == "modelops-drift"]
    records = {r["record"]: r["expr"] for r in group["rules"] if "record" in r}
    return records, [r for r in group["rules"] if "alert" in r]


def test_drift_recording_rules_compute_psi_over_the_window_with_the_eps_clamp(tmp_path):
    records, _ = drift_rules({"monitoring": {"drift": {"window": "20m"}}}, tmp_path)
    assert list(records) == ["modelops:feature_rows:increase", "modelops:feature_psi", "modelops:prediction_psi"]
    by = "namespace, model_name, model_version"
    assert records["modelops:feature_rows:increase"] == (
        f"sum by ({by}, feature) (increase(modelops_inference_feature_bin_total[20m]))")
    assert records["modelops:feature_psi"].startswith(f"sum by ({by}, feature) (")
    assert records["modelops:prediction_psi"].startswith(f"sum by ({by}) (")
    for expr, counter, ratio in [
            (records["modelops:feature_psi"], "feature_bin_total", "feature_reference_ratio"),
            (records["modelops:prediction_psi"], "predictions_total", "prediction_reference_ratio")]:
        assert expr.count(f"increase(modelops_inference_{counter}[20m])") == 4  # share = bin / all, twice
        assert expr.count(f"modelops_inference_{ratio})") == 2
        assert expr.count(", 1e-4)") == 4 and " * ln(" in expr
        assert "[10m]" not in expr


def test_drift_alert_thresholds_for_and_min_samples_are_values(tmp_path):
    _, alerts = drift_rules({"monitoring": {
        "alerts": {"featureDrift": {"warning": 0.15, "critical": 0.3, "for": "7m"},
                   "predictionDrift": {"warning": 0.12, "critical": 0.4, "for": "3m"}},
        "drift": {"minSamples": 250}, "prometheusRule": {"additionalAlertLabels": {"team": "ml"}}}}, tmp_path)
    got = {(a["alert"], a["labels"]["severity"]): a for a in alerts}
    assert set(got) == {(name, severity) for name in ("ModelopsFeatureDrift", "ModelopsPredictionDrift")
                        for severity in ("warning", "critical")}
    for (name, severity), threshold, for_ in [
            (("ModelopsFeatureDrift", "warning"), "0.15", "7m"), (("ModelopsFeatureDrift", "critical"), "0.3", "7m"),
            (("ModelopsPredictionDrift", "warning"), "0.12", "3m"),
            (("ModelopsPredictionDrift", "critical"), "0.4", "3m")]:
        alert = got[name, severity]
        series = "modelops:feature_psi" if name == "ModelopsFeatureDrift" else "modelops:prediction_psi"
        assert alert["expr"].startswith(f"{series} > {threshold}\n")
        assert alert["expr"].endswith(">= 250") and alert["for"] == for_
        assert alert["labels"] == {"severity": severity, "team": "ml"}
        assert "{{ $labels.model_name }}" in alert["annotations"]["summary"]
    assert "modelops:feature_rows:increase >= 250" in got["ModelopsFeatureDrift", "warning"]["expr"]
    assert '"{{ $labels.feature }}"' in got["ModelopsFeatureDrift", "critical"]["annotations"]["summary"]
    # the defaults: warning above 0.1, critical above 0.25, for 5m, 100 rows
    _, defaults = drift_rules()
    assert sorted((a["expr"].split("\n")[0], a["for"]) for a in defaults) == sorted(
        [(f"modelops:{s}_psi > {t}", "5m") for s in ("feature", "prediction") for t in ("0.1", "0.25")])
    assert all(a["expr"].endswith(">= 100") for a in defaults)


def test_notes_tell_the_next_step_and_the_crd_upgrade_caveat():
    res = helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client")
    notes = res.stdout.split("NOTES:", 1)[1]
    assert f"rollout status deployment/{OPERATOR}" in notes
    assert f"helm test {RELEASE}" in notes
    assert "Helm never upgrades the CRDs" in notes


def test_notes_with_auth_tell_where_each_side_gets_mlflow_credentials():
    res = helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client",
               "--set", "mlflow.auth.enabled=true")
    notes = res.stdout.split("NOTES:", 1)[1]
    assert f"get secret {MLFLOW}-auth -o jsonpath='{{.data.password}}'" in notes
    assert "spec.model.credentialsSecret" in notes and "never copied" in notes


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
    assert unrandom(three.stdout) == unrandom(helm(*template_args(values), *kube).stdout)


def unrandom(manifests: str) -> str:
    """The chart's rendering with the keys it generates at random (no cluster to look them up) blanked."""
    return re.sub(r"(replay-key|password|flask-secret-key|token): \S+", r"\1: <random>", manifests)


def test_the_replay_key_is_generated_once_or_taken_from_an_existing_secret():
    docs = render()
    key = base64.b64decode(one(docs, "Secret", f"{OPERATOR}-replay-key")["data"]["replay-key"])
    assert len(key) >= 32
    env = env_of(pod_spec(one(docs, "Deployment", OPERATOR))["containers"][0])
    assert env["MODELOPS_REPLAY_KEY"] == {"secretKeyRef": {"name": f"{OPERATOR}-replay-key", "key": "replay-key"}}
    assert 'lookup "v1" "Secret"' in (CHART / "templates/operator.yaml").read_text()  # kept on upgrade
    mine = render(sets={"operator.replayKey.existingSecret": "mine", "operator.replayKey.existingSecretKey": "k"})
    assert not find(mine, "Secret", f"{OPERATOR}-replay-key")
    env = env_of(pod_spec(one(mine, "Deployment", OPERATOR))["containers"][0])
    assert env["MODELOPS_REPLAY_KEY"] == {"secretKeyRef": {"name": "mine", "key": "k"}}


def test_the_alert_webhook_token_is_generated_once_or_taken_from_an_existing_secret():
    docs = render()
    secret = one(docs, "Secret", f"{RELEASE}-alert-webhook")
    assert len(base64.b64decode(secret["data"]["token"])) >= 32
    env = env_of(pod_spec(one(docs, "Deployment", OPERATOR))["containers"][0])
    assert env["MODELOPS_ALERT_WEBHOOK_TOKEN"] == {"secretKeyRef": {"name": f"{RELEASE}-alert-webhook", "key": "token"}}
    template = (CHART / "templates/operator.yaml").read_text()
    assert 'lookup "v1" "Secret" .Release.Namespace $alertWebhook' in template  # kept on upgrade
    mine = render(sets={"operator.alertWebhook.existingSecret": "am", "operator.alertWebhook.existingSecretKey": "k"})
    assert not find(mine, "Secret", f"{RELEASE}-alert-webhook")
    env = env_of(pod_spec(one(mine, "Deployment", OPERATOR))["containers"][0])
    assert env["MODELOPS_ALERT_WEBHOOK_TOKEN"] == {"secretKeyRef": {"name": "am", "key": "k"}}


@pytest.mark.parametrize("values", VALUES_FILES.values(), ids=VALUES_FILES.keys())
def test_the_operator_may_create_watch_and_delete_jobs_for_exports_and_retraining(values):
    """Retrain Jobs need what export Jobs do; in namespaced mode the Role grants it in the watched namespace."""
    docs = render(values)
    roles = [d for d in docs if d["kind"] in ("Role", "ClusterRole") and d["metadata"]["name"] == OPERATOR]
    [role] = roles
    verbs = {v for rule in role["rules"] if "batch" in rule["apiGroups"] and "jobs" in rule["resources"]
             for v in rule["verbs"]}
    assert {"create", "get", "list", "watch", "delete"} <= verbs
