import pytest

from modelops_operator import manifests
from modelops_operator.spec import InvalidSpec, ModelDeploymentSpec
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
    env = {e["name"]: e.get("value") for e in container["env"]}
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
    assert {kind for _, kind, _ in manifests.absent("md", full)} == {"HTTPRoute", "Deployment", "Service"}
    assert set(manifests.absent("md", spec())) == {
        ("autoscaling/v2", "HorizontalPodAutoscaler", "md"), ("policy/v1", "PodDisruptionBudget", "md"),
        ("networking.k8s.io/v1", "Ingress", "md"), ("gateway.networking.k8s.io/v1", "HTTPRoute", "md"),
        ("apps/v1", "Deployment", "md-canary"), ("v1", "Service", "md-canary")}


CANARY = {"rollout": {"strategy": "canary"}, "gateway": {"parentRefs": [{"name": "gw", "namespace": "infra"}],
                                                          "hostnames": ["md.example.com"]}}


def test_a_canary_spec_adds_the_canary_service_and_the_route_and_never_prunes_them():
    objs = manifests.children("md", "ns", spec(**CANARY), TARGET)
    assert [(o["kind"], o["metadata"]["name"]) for o in objs] == [
        ("Deployment", "md"), ("Service", "md"), ("Service", "md-canary"), ("HTTPRoute", "md")]
    assert {name for _, _, name in manifests.absent("md", spec(**CANARY))} == {"md"}  # HPA, PDB, Ingress only


def test_the_canary_deployment_never_matches_the_stable_selector_but_serves_the_same_model_name():
    stable = manifests.deployment("md", "ns", spec(**CANARY), TARGET)
    canary = manifests.deployment("md", "ns", spec(**CANARY), TARGET, canary=True)
    assert canary["metadata"]["name"] == "md-canary"
    pod_labels = canary["spec"]["template"]["metadata"]["labels"]
    assert pod_labels[manifests.TRACK_LABEL] == "canary"
    # neither the stable Deployment nor the Service <md> (what in-cluster clients call) selects a canary pod
    stable_service = manifests.service("md", "ns", spec())
    for stable_selector in (stable["spec"]["selector"]["matchLabels"], stable_service["spec"]["selector"]):
        assert not all(pod_labels.get(k) == v for k, v in stable_selector.items())
    assert all(pod_labels.get(k) == v for k, v in canary["spec"]["selector"]["matchLabels"].items())
    canary_service = manifests.service("md", "ns", spec(**CANARY), canary=True)
    assert canary_service["spec"]["selector"] == canary["spec"]["selector"]["matchLabels"]
    env = {e["name"]: e.get("value") for e in canary["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODELOPS_MODEL_NAME"] == "md"  # the route sends /v2/models/md/... to both


@pytest.mark.parametrize("weight,want", [(0, [100, 0]), (10, [90, 10]), (100, [0, 100])])
def test_the_route_splits_by_weight_between_the_stable_and_canary_services(weight, want):
    route = manifests.http_route("md", "ns", spec(**CANARY), weight)
    rule = route["spec"]["rules"][0]
    assert [(b["name"], b["port"], b["weight"]) for b in rule["backendRefs"]] == [
        ("md", 80, want[0]), ("md-canary", 80, want[1])]
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                            "name": "gw", "namespace": "infra"}]
    assert route["spec"]["hostnames"] == ["md.example.com"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]


def test_a_rolling_spec_with_a_gateway_routes_everything_to_the_stable_service():
    route = manifests.http_route("md", "ns", spec(gateway=CANARY["gateway"]), 0)
    assert [b["name"] for b in route["spec"]["rules"][0]["backendRefs"]] == ["md"]
    assert manifests.http_route("md", "ns", spec(), 0) is None


def test_gateway_defaults_come_from_the_operator_and_say_which_setting_is_missing():
    filled = manifests.gateway_defaults("md", "ns", spec(gateway={}), {"namespace": "infra", "name": "gw",
                                                                       "sectionName": "http"}, "example.com")
    assert filled.gateway.hostnames == ["md.ns.example.com"]
    assert (filled.gateway.parent_refs[0].name, filled.gateway.parent_refs[0].section_name) == ("gw", "http")
    with pytest.raises(InvalidSpec, match="spec.gateway.parentRefs.*operator.gateway"):
        manifests.gateway_defaults("md", "ns", spec(gateway={}), None, "example.com")
    with pytest.raises(InvalidSpec, match="spec.gateway.hostnames.*operator.ingressDomain"):
        manifests.gateway_defaults("md", "ns", spec(gateway={"parentRefs": [{"name": "gw"}]}), None, None)
    assert manifests.gateway_defaults("md", "ns", spec(), None, None).gateway is None


def test_the_endpoint_url_is_the_gateways_when_there_is_one():
    assert manifests.endpoint_url("md", "ns", spec(**CANARY)) == "http://md.example.com/v2/models/md"


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
    env = {e["name"]: e.get("value") for e in container["env"]}
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
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MODELOPS_GRPC"] == "false" and "MODELOPS_GRPC_PORT" not in env
    assert [p["name"] for p in container["ports"]] == ["http"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert [p["name"] for p in manifests.service("md", "ns", off)["spec"]["ports"]] == ["http"]


def test_the_keep_alive_reaches_the_server_defaulting_above_ingress_upstream_keep_alive():
    def keep_alive(s):
        container = manifests.deployment("md", "ns", s, TARGET)["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value") for e in container["env"]}["MODELOPS_KEEP_ALIVE_SECONDS"]

    assert keep_alive(spec()) == "75"
    assert keep_alive(spec(serving={"keepAliveSeconds": 120})) == "120"


def test_each_pod_carries_its_targets_hash_so_the_gate_can_tell_targets_apart():
    dep = manifests.deployment("md", "ns", spec(), TARGET)
    assert dep["spec"]["template"]["metadata"]["annotations"][manifests.TARGET_HASH_ANNOTATION] == TARGET.hash()


def test_batching_is_rendered_off_for_dynamic_int8_exports_whatever_the_spec_says():
    def batching(md):
        env = {e["name"]: e.get("value") for e in manifests.server_env("md", md, TARGET)}
        return env["MODELOPS_BATCHING"]

    assert batching(spec()) == "true"
    assert batching(spec(export={"quantize": "dynamic-int8"})) == "false"
    assert batching(spec(serving={"batching": {"enabled": False}})) == "false"


def test_the_watches_ask_the_api_server_for_serving_pods_and_managed_objects_only():
    assert manifests.serving_pods_selector() == (
        "app.kubernetes.io/name=modelops-serve,app.kubernetes.io/managed-by=modelops-operator")
    assert manifests.managed_selector() == "app.kubernetes.io/managed-by=modelops-operator"
    pod_labels = manifests.deployment("md", "ns", spec(), TARGET)["spec"]["template"]["metadata"]["labels"]
    for selector in (manifests.serving_pods_selector(), manifests.managed_selector()):
        assert all(pod_labels[k] == v for k, v in (term.split("=") for term in selector.split(",")))


def test_env_names_are_unique_and_the_operators_own_cannot_be_overridden():
    """The CRD refuses duplicates and reserved names; an object stored before those rules must still
    not point the server at another model or registry."""
    user = [{"name": "EXTRA", "value": "1"}, {"name": "MODELOPS_MODEL_URI", "value": "s3://elsewhere"},
            {"name": "MLFLOW_TRACKING_URI", "value": "http://evil"}, {"name": "EXTRA", "value": "2"},
            {"name": "MODELOPS_GRPC_PORT", "value": "9"}]
    dep = manifests.deployment("md", "ns", spec(serving={"env": user, "grpc": {"enabled": False}}), TARGET)
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)), names
    values = {e["name"]: e.get("value") for e in env}
    assert values["MODELOPS_MODEL_URI"] == TARGET.model_uri
    assert values["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert values["EXTRA"] == "2"  # of a repeated name the last wins, as the kubelet would have it
    assert "MODELOPS_GRPC_PORT" not in values  # reserved even when gRPC is off


def test_every_env_name_the_operator_sets_is_reserved():
    on = manifests.server_env("md", spec(), TARGET)
    assert {e["name"] for e in on} <= manifests.RESERVED_ENV
    assert "MODELOPS_GRPC_PORT" in {e["name"] for e in on} and "MLFLOW_TRACKING_URI" in {e["name"] for e in on}


def test_an_ingress_without_a_host_is_named_after_the_modeldeployment_and_namespace():
    """A bare `/` rule would route every namespace's same-named endpoint through one shared controller."""
    host = manifests.ingress_host("md", "team-a", spec(ingress={}), "modelops.localhost")
    assert host == "md.team-a.modelops.localhost"
    filled = manifests.with_ingress_host("md", "team-a", spec(ingress={"path": "/m"}), "modelops.localhost")
    assert manifests.ingress("md", "team-a", filled)["spec"]["rules"][0]["host"] == "md.team-a.modelops.localhost"
    assert manifests.endpoint_url("md", "team-a", filled) == "http://md.team-a.modelops.localhost/m/v2/models/md"


def test_a_given_ingress_host_wins_over_the_domain_and_no_ingress_needs_none():
    assert manifests.ingress_host("md", "ns", spec(ingress={"host": "m.example.com"}), "modelops.localhost") == \
        "m.example.com"
    assert manifests.ingress_host("md", "ns", spec(ingress={"host": "m.example.com"}), None) == "m.example.com"
    assert manifests.ingress_host("md", "ns", spec(), None) is None
    assert manifests.with_ingress_host("md", "ns", spec(), None) == spec()


def test_an_ingress_without_a_host_or_a_domain_is_an_invalid_spec_naming_both_fixes():
    with pytest.raises(InvalidSpec) as exc:
        manifests.ingress_host("md", "ns", spec(ingress={}), None)
    assert "spec.ingress.host" in str(exc.value) and "operator.ingressDomain" in str(exc.value)


def test_serving_pods_keep_an_input_sample_behind_a_token_unless_the_spec_opts_out():
    env = {e["name"]: e for e in manifests.server_env("md", spec(), TARGET)}
    assert env["MODELOPS_REPLAY_PORT"]["value"] == str(manifests.REPLAY_PORT)
    assert env["MODELOPS_SAMPLE_ROWS"]["value"] == "256"
    assert env["MODELOPS_REPLAY_TOKEN"] == {"name": "MODELOPS_REPLAY_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "md-replay-token", "key": "token", "optional": True}}}
    # the sample's port is on no container port list and in no Service
    dep = manifests.deployment("md", "ns", spec(), TARGET)
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert manifests.REPLAY_PORT not in [p["containerPort"] for p in container["ports"]]
    assert {p["targetPort"] for p in manifests.service("md", "ns", spec())["spec"]["ports"]} == {"http", "grpc"}
    for off in ({"analysis": {"enabled": False}}, {"analysis": {"replay": {"productionSample": False}}},
                {"analysis": {"replay": {"enabled": False}}}):
        env = {e["name"]: e for e in manifests.server_env("md", spec(**off), TARGET)}
        assert env["MODELOPS_REPLAY_PORT"]["value"] == "0" and "MODELOPS_REPLAY_TOKEN" not in env, off


def test_the_sample_token_secret_is_only_ever_created_and_names_its_key():
    secret = manifests.replay_secret("md", "ns", "t0k")
    assert secret["metadata"]["name"] == "md-replay-token" and secret["stringData"] == {"token": "t0k"}
