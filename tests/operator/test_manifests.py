from modelops_operator import manifests
from modelops_operator.spec import ModelDeploymentSpec
from modelops_operator.target import ServingTarget

TARGET = ServingTarget("3", "runs:/abc/onnx/model.onnx", "f" * 64, "local/modelops-inference:dev", "http://mlflow:5000")


def spec(**extra):
    return ModelDeploymentSpec.model_validate({"model": {"name": "cancer", "alias": "champion"}, **extra})


def test_deployment_never_sets_replicas_so_hpa_and_kubectl_scale_survive_apply():
    dep = manifests.deployment("md", "ns", spec(autoscaling={"maxReplicas": 4}), TARGET)
    assert "replicas" not in dep["spec"]


def test_deployment_pod_serves_the_target_and_is_locked_down():
    dep = manifests.deployment("md", "ns", spec(), TARGET)
    pod = dep["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODELOPS_MODEL_URI"] == TARGET.model_uri
    assert env["MODELOPS_MODEL_SHA256"] == TARGET.sha256
    assert env["MODELOPS_MODEL_VERSION"] == "3"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert container["image"] == TARGET.image
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert pod["readinessGates"] == [{"conditionType": manifests.VERIFIED_GATE}]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert dep["spec"]["template"]["metadata"]["annotations"][manifests.MODEL_VERSION_ANNOTATION] == "3"


def test_rollout_settings_reach_the_deployment_strategy():
    dep = manifests.deployment("md", "ns", spec(rollout={"maxSurge": "50%", "progressDeadlineSeconds": 30}), TARGET)
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == "50%"


def test_the_deployments_own_progress_deadline_is_off_as_the_operator_keeps_it():
    """Pods held at the readiness gate are not Ready: Kubernetes' deadline would count the gate's wait."""
    dep = manifests.deployment("md", "ns", spec(rollout={"progressDeadlineSeconds": 30}), TARGET)
    assert dep["spec"]["progressDeadlineSeconds"] == 2**31 - 1  # the deployment controller's "no deadline"


def test_user_env_is_appended_after_ours():
    dep = manifests.deployment("md", "ns", spec(serving={"env": [{"name": "EXTRA", "value": "1"}]}), TARGET)
    assert dep["spec"]["template"]["spec"]["containers"][0]["env"][-1] == {"name": "EXTRA", "value": "1"}


def test_optional_children_follow_the_spec():
    plain = [c["kind"] for c in manifests.children("md", "ns", spec(), TARGET)]
    assert plain == ["Deployment", "Service"]
    full = spec(autoscaling={"minReplicas": 2, "maxReplicas": 5}, ingress={"host": "m.example.com"})
    kinds = [c["kind"] for c in manifests.children("md", "ns", full, TARGET)]
    assert kinds == ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress"]
    assert manifests.absent_kinds(full) == []
    assert set(manifests.absent_kinds(spec())) == {"HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress"}


def test_hpa_targets_the_deployment_with_the_cpu_goal():
    hpa = manifests.hpa("md", "ns", spec(autoscaling={"minReplicas": 2, "maxReplicas": 6,
                                                      "targetCPUUtilizationPercentage": 55}))
    assert hpa["spec"]["scaleTargetRef"]["name"] == "md"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 55


def test_ingress_routes_the_path_to_the_service_with_tls_when_asked():
    ing = manifests.ingress("md", "ns", spec(ingress={"host": "m.example.com", "path": "/", "className": "traefik",
                                                     "tls": {"secretName": "cert"}}))
    rule = ing["spec"]["rules"][0]
    assert rule["host"] == "m.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == "md"
    assert ing["spec"]["ingressClassName"] == "traefik"
    assert ing["spec"]["tls"][0]["secretName"] == "cert"


def test_service_selects_exactly_the_deployments_pods():
    svc = manifests.service("md", "ns", spec())
    dep = manifests.deployment("md", "ns", spec(), TARGET)
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in svc["spec"]["selector"].items())


def test_pdb_only_with_more_than_one_replica():
    assert manifests.pdb("md", "ns", spec()) is None
    assert manifests.pdb("md", "ns", spec(replicas=3))["spec"]["maxUnavailable"] == 1


def test_endpoint_url_prefers_the_ingress():
    assert manifests.endpoint_url("md", "ns", spec()) == "http://md.ns.svc:80/v2/models/md"
    with_ingress = spec(ingress={"host": "m.example.com", "tls": {"secretName": "c"}})
    assert manifests.endpoint_url("md", "ns", with_ingress) == "https://m.example.com/v2/models/md"


def test_same_inputs_build_identical_objects():
    assert manifests.children("md", "ns", spec(), TARGET) == manifests.children("md", "ns", spec(), TARGET)


def test_grpc_is_on_by_default_with_its_port_on_the_pod_and_the_service():
    dep = manifests.deployment("md", "ns", spec(), TARGET)
    container = dep["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert (env["MODELOPS_GRPC"], env["MODELOPS_GRPC_PORT"]) == ("true", "8081")
    assert {"name": "grpc", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    ports = {p["name"]: p for p in manifests.service("md", "ns", spec())["spec"]["ports"]}
    assert ports["grpc"] == {"name": "grpc", "port": 8081, "targetPort": "grpc", "protocol": "TCP",
                             "appProtocol": "kubernetes.io/h2c"}
    assert ports["http"]["port"] == manifests.SERVICE_PORT


def test_with_grpc_the_liveness_probe_asks_grpc_health_and_readiness_stays_http_behind_the_gate():
    pod = manifests.deployment("md", "ns", spec(), TARGET)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["grpc"] == {"port": 8081, "service": "liveness"}
    assert "httpGet" not in container["livenessProbe"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert pod["readinessGates"] == [{"conditionType": manifests.VERIFIED_GATE}]


def test_grpc_off_leaves_http_alone_on_the_pod_and_the_service():
    off = spec(serving={"grpc": {"enabled": False}})
    container = manifests.deployment("md", "ns", off, TARGET)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODELOPS_GRPC"] == "false" and "MODELOPS_GRPC_PORT" not in env
    assert [p["name"] for p in container["ports"]] == ["http"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert [p["name"] for p in manifests.service("md", "ns", off)["spec"]["ports"]] == ["http"]
