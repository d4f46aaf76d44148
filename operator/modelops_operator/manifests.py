"""Pure builders for the objects a ModelDeployment owns.

Every child is named after the ModelDeployment and built from (spec, target) alone, so applying the
same inputs twice is a no-op and a rollback is just building with the last good target.
"""

from __future__ import annotations

from typing import Any

from .spec import InvalidSpec, ModelDeploymentSpec, ParentRef
from .target import ServingTarget

HTTP_PORT = 8080
SERVICE_PORT = 80
# The v2 gRPC protocol, on the same port in the container and on the Service (KServe's and MLServer's).
GRPC_PORT = 8081
# The serving pods' input sample (modelops-serve --replay-port): on no Service, Ingress or container
# port list, so only a client that knows the pod's IP and holds the token reads it.
REPLAY_PORT = 8082
REPLAY_TOKEN_KEY = "token"
# Gateway API's value for HTTP/2 cleartext (what gRPC without TLS is), read by Gateway implementations
# (Envoy Gateway, NGINX Gateway Fabric, Traefik) and by Istio to talk HTTP/2 to the pods.
GRPC_APP_PROTOCOL = "kubernetes.io/h2c"
# grpc.health.v1 service modelops-serve reports SERVING while the process answers, loaded or not.
GRPC_LIVENESS_SERVICE = "liveness"
RUN_AS_USER = 10001
PRESTOP_SECONDS = 5
MODEL_VERSION_ANNOTATION = "modelops.io/model-version"
# ServingTarget.hash() of what the pod serves: the readiness gate lets a pod in unchecked only when
# this equals the verified target's (status.lastGood.targetHash), never for the version alone
TARGET_HASH_ANNOTATION = "modelops.io/target-hash"
VERIFIED_GATE = "modelops.io/verified"
# The Deployment controller's "no deadline" value. Its own deadline would count the time pods wait at
# the readiness gate (not Ready, so no progress to it) and the operator's downtime against a healthy
# version; the operator keeps spec.rollout.progressDeadlineSeconds itself, from its observations (rollout.py).
NO_KUBERNETES_DEADLINE = 2**31 - 1


MANAGED_LABELS = {"app.kubernetes.io/managed-by": "modelops-operator"}
# A canary's pods, beside app.kubernetes.io/instance=<name>-canary (so that neither the stable
# Deployment's selector nor the Service <name> ever matches them).
TRACK_LABEL = "modelops.io/track"
GATEWAY_API = "gateway.networking.k8s.io/v1"


def canary_name(name: str) -> str:
    """The canary's Deployment, Service and pods' instance label. A ModelDeployment of that very name
    would collide on them, and ownership.claim refuses the second one as a Conflict."""
    return f"{name}-canary"


def owner_of(pod_labels: dict[str, str]) -> str:
    """The ModelDeployment a serving pod belongs to: its instance label, less a canary's suffix."""
    instance = pod_labels["app.kubernetes.io/instance"]
    if pod_labels.get(TRACK_LABEL) == "canary" and instance.endswith("-canary"):
        return instance[: -len("-canary")]
    return instance

# every ModelDeployment's serving pods: an export Job's pods carry the managed-by label too, but no gate
SERVING_POD_LABELS = {"app.kubernetes.io/name": "modelops-serve", **MANAGED_LABELS}


def labels(name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "modelops-serve",
        "app.kubernetes.io/instance": name,
        **MANAGED_LABELS,
    }


def selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "modelops-serve", "app.kubernetes.io/instance": name}


def selector_string(name: str) -> str:
    return _selector_string(selector(name))


def _selector_string(match: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in match.items())


def serving_pods_selector() -> str:
    """SERVING_POD_LABELS, for the API server to filter the operator's pod watch and sweeps."""
    return _selector_string(SERVING_POD_LABELS)


def managed_selector() -> str:
    """Everything the operator created, for the API server to filter the operator's Deployment watch."""
    return _selector_string(MANAGED_LABELS)


def _meta(name: str, namespace: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": labels(name)}


def job_container_security_context() -> dict[str, Any]:
    """Every Job container the operator creates (export, retrain): no privilege, a read-only root (its
    writes go to a /tmp emptyDir), no capabilities."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def owner_reference(owner: dict[str, Any], *, controller: bool = False) -> dict[str, Any]:
    """A reference to `owner` (a ModelDeployment) that never blocks its deletion; `controller` for an
    object only it manages (a retrain Job), not for one several share (an export Job)."""
    meta = owner["metadata"]
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"], "uid": meta["uid"],
            "controller": controller, "blockOwnerDeletion": False}


def pod_security_context() -> dict[str, Any]:
    """Every pod the operator creates (serving and export) runs as the images' non-root user."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def batching_enabled(spec: ModelDeploymentSpec) -> bool:
    """Cross-request batching is off for dynamic-int8 exports whatever spec.serving.batching says: dynamic
    quantization scales activations over the whole input tensor (DynamicQuantizeLinear), so in a shared
    batch one client's answer would depend on the rows other clients sent. (The server also detects
    such graphs itself; rendering it here makes the effective setting visible on the pod.)"""
    return spec.serving.batching.enabled and spec.export.quantize != "dynamic-int8"


# Every variable server_env may set: the CRD refuses them in spec.serving.env (tests/crds checks that
# its list equals this set). Exactly these, not all of MODELOPS_*: the server reads every flag from a
# MODELOPS_<FLAG> variable, and the ones the operator leaves alone (MODELOPS_LOG_LEVEL,
# MODELOPS_MAX_QUEUE_DEPTH, ...) are the user's to tune.
RESERVED_ENV = frozenset({
    "MODELOPS_MODEL_URI", "MODELOPS_MODEL_NAME", "MODELOPS_MODEL_VERSION", "MODELOPS_MODEL_SHA256",
    "MODELOPS_MODEL_DIR", "MODELOPS_PORT", "MODELOPS_INTRA_OP_THREADS", "MODELOPS_BATCHING",
    "MODELOPS_MAX_BATCH_SIZE", "MODELOPS_MAX_BATCH_DELAY_MS", "MODELOPS_GRPC", "MODELOPS_GRPC_PORT",
    "MODELOPS_KEEP_ALIVE_SECONDS", "MODELOPS_REPLAY_PORT", "MODELOPS_REPLAY_TOKEN", "MODELOPS_SAMPLE_ROWS",
    "MLFLOW_TRACKING_URI",
})


def merged_env(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ours, then the user's, one entry per name. A reserved name is dropped (the CRD refuses it, but an
    object stored before that rule must still not point the server at another model or registry); of a
    user's repeated name the last wins, as the kubelet would have it."""
    taken = RESERVED_ENV | {e["name"] for e in ours}
    extra: dict[str, dict[str, Any]] = {}
    for entry in theirs:
        if entry.get("name") not in taken:
            extra[entry.get("name")] = entry
    return ours + list(extra.values())


def server_env(name: str, spec: ModelDeploymentSpec, target: ServingTarget) -> list[dict[str, Any]]:
    batching = spec.serving.batching
    env = {
        "MODELOPS_MODEL_URI": target.model_uri,
        "MODELOPS_MODEL_NAME": name,
        "MODELOPS_MODEL_VERSION": target.model_version,
        "MODELOPS_MODEL_SHA256": target.sha256,
        "MODELOPS_MODEL_DIR": "/tmp/model",
        "MODELOPS_PORT": str(HTTP_PORT),
        "MODELOPS_INTRA_OP_THREADS": str(spec.serving.threads),
        "MODELOPS_KEEP_ALIVE_SECONDS": str(spec.serving.keep_alive_seconds),
        "MODELOPS_BATCHING": "true" if batching_enabled(spec) else "false",
        "MODELOPS_MAX_BATCH_SIZE": str(batching.max_batch_size),
        "MODELOPS_MAX_BATCH_DELAY_MS": str(batching.max_delay_ms),
        "MODELOPS_GRPC": "true" if spec.serving.grpc.enabled else "false",
    }
    if spec.serving.grpc.enabled:
        env["MODELOPS_GRPC_PORT"] = str(GRPC_PORT)
    if target.tracking_uri:
        env["MLFLOW_TRACKING_URI"] = target.tracking_uri
    ours = [{"name": k, "value": v} for k, v in env.items()]
    if keeps_sample(spec):
        ours += [{"name": "MODELOPS_REPLAY_PORT", "value": str(REPLAY_PORT)},
                 {"name": "MODELOPS_SAMPLE_ROWS", "value": str(spec.analysis.replay.sample_rows)},
                 {"name": "MODELOPS_REPLAY_TOKEN", "valueFrom": {"secretKeyRef": {
                     "name": replay_secret_name(name), "key": REPLAY_TOKEN_KEY, "optional": True}}}]
    else:
        ours.append({"name": "MODELOPS_REPLAY_PORT", "value": "0"})
    return merged_env(ours, list(spec.serving.env))


def keeps_sample(spec: ModelDeploymentSpec) -> bool:
    """Serving pods keep a sample of recent inputs for the operator's replay (spec.analysis.replay)."""
    replay = spec.analysis.replay
    return spec.analysis.enabled and replay.enabled and replay.production_sample


def replay_secret_name(name: str) -> str:
    return f"{name}-replay-token"


def replay_secret(name: str, namespace: str, token: str) -> dict[str, Any]:
    """The token a serving pod asks of whoever reads its input sample. Created once, never read back:
    the operator derives the same token from its key (replay.token_for), so it needs only `create` on
    Secrets, not `get` on every Secret of the cluster."""
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": replay_secret_name(name), "namespace": namespace, "labels": dict(MANAGED_LABELS)},
        "stringData": {REPLAY_TOKEN_KEY: token},
    }


def _credentials(spec: ModelDeploymentSpec) -> dict[str, Any]:
    """MLflow credentials from the namespace's own Secret (spec.model.credentialsSecret), never the operator's."""
    secret = spec.model.credentials_secret
    return {"envFrom": [{"secretRef": {"name": secret}}]} if secret else {}


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _liveness(spec: ModelDeploymentSpec) -> dict[str, Any]:
    """With gRPC on, liveness asks the gRPC listener (grpc.health.v1, service "liveness": SERVING while
    loading too, so a slow model load is never a restart) while readiness keeps asking HTTP: between
    them both listeners are probed all the time. Kubernetes' grpc probe takes a port number, not a name."""
    if not spec.serving.grpc.enabled:
        return {**_probe("/v2/health/live", period=10, failures=3), "initialDelaySeconds": 10}
    return {"grpc": {"port": GRPC_PORT, "service": GRPC_LIVENESS_SERVICE}, "periodSeconds": 10,
            "timeoutSeconds": 2, "failureThreshold": 3, "initialDelaySeconds": 10}


def _ports(spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    ports = [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}]
    if spec.serving.grpc.enabled:
        ports.append({"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"})
    return ports


def deployment(name: str, namespace: str, spec: ModelDeploymentSpec, target: ServingTarget,
               canary: bool = False) -> dict[str, Any]:
    """The inference Deployment, without spec.replicas: replicas are set apart (see rollout.scale)
    so that applying a template never resets an HPA's or a user's scaling. The canary's is the same
    template under canary_name(name), serving the model under the same name (the route sends one
    URL to both)."""
    obj_name = canary_name(name) if canary else name
    pod_labels = {**labels(obj_name), **({TRACK_LABEL: "canary"} if canary else {})}
    container = {
        "name": "server",
        "image": target.image,
        "imagePullPolicy": spec.serving.image_pull_policy,
        "ports": _ports(spec),
        "env": server_env(name, spec, target),
        **_credentials(spec),
        # Ready only once the model is loaded, verified and answered a warm-up inference (and, by the
        # readiness gate, passed the operator's checks): one readiness for both protocols.
        "readinessProbe": _probe("/v2/health/ready", period=2, failures=2),
        "livenessProbe": _liveness(spec),
        "resources": spec.serving.resources or {"requests": {"cpu": "100m", "memory": "256Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        # Keep serving while kube-proxy and ingresses drop this pod from their endpoints; only then
        # does SIGTERM start the server's own drain.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(obj_name, namespace),
        "spec": {
            "selector": {"matchLabels": selector(obj_name)},
            "progressDeadlineSeconds": NO_KUBERNETES_DEADLINE,
            "revisionHistoryLimit": 5,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {
                    "maxSurge": spec.rollout.max_surge,
                    "maxUnavailable": spec.rollout.max_unavailable,
                },
            },
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        MODEL_VERSION_ANNOTATION: target.model_version,
                        TARGET_HASH_ANNOTATION: target.hash(),
                        "modelops.io/model-sha256": target.sha256,
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(HTTP_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": pod_security_context(),
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
                    # no Service traffic until the operator's own smoke checks pass on this pod (gate.py)
                    "readinessGates": [{"conditionType": VERIFIED_GATE}],
                },
            },
        },
    }


def service(name: str, namespace: str, spec: ModelDeploymentSpec, canary: bool = False) -> dict[str, Any]:
    """The stable pods' Service (what in-cluster clients call, whatever the strategy), or the canary's."""
    name = canary_name(name) if canary else name
    ports = [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}]
    if spec.serving.grpc.enabled:
        ports.append({"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP",
                      "appProtocol": GRPC_APP_PROTOCOL})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace),
        "spec": {"type": "ClusterIP", "selector": selector(name), "ports": ports},
    }


def hpa(name: str, namespace: str, spec: ModelDeploymentSpec) -> dict[str, Any] | None:
    if not spec.autoscaling:
        return None
    scaling = spec.autoscaling
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(name, namespace),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": scaling.target_cpu_utilization_percentage,
                        },
                    },
                }
            ],
        },
    }


def ingress_host(name: str, namespace: str, spec: ModelDeploymentSpec, domain: str | None) -> str | None:
    """The Ingress's host: the spec's, else <name>.<namespace>.<domain>. Never none at all: a rule
    without a host matches every host, so same-named ModelDeployments of two namespaces would collide
    on a shared ingress controller. None when the spec asks for no Ingress."""
    if not spec.ingress:
        return None
    if spec.ingress.host:
        return spec.ingress.host
    if not domain:
        raise InvalidSpec(
            "spec.ingress.host is not set and the operator has no ingress domain for the default "
            "<name>.<namespace>.<domain>: set spec.ingress.host, or the chart value operator.ingressDomain "
            "(MODELOPS_INGRESS_DOMAIN)")
    return f"{name}.{namespace}.{domain}"


def with_ingress_host(name: str, namespace: str, spec: ModelDeploymentSpec, domain: str | None) -> ModelDeploymentSpec:
    """The spec with its Ingress host filled in, so the Ingress, its TLS hosts and the status URL agree."""
    host = ingress_host(name, namespace, spec, domain)
    if host is None or host == spec.ingress.host:
        return spec
    return spec.model_copy(update={"ingress": spec.ingress.model_copy(update={"host": host})})


def ingress(name: str, namespace: str, spec: ModelDeploymentSpec) -> dict[str, Any] | None:
    if not spec.ingress:
        return None
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": spec.ingress.path,
                    "pathType": "Prefix",
                    "backend": {"service": {"name": name, "port": {"name": "http"}}},
                }
            ]
        }
    }
    if spec.ingress.host:
        rule["host"] = spec.ingress.host
    body: dict[str, Any] = {"rules": [rule]}
    if spec.ingress.class_name:
        body["ingressClassName"] = spec.ingress.class_name
    if spec.ingress.tls and spec.ingress.tls.secret_name:
        body["tls"] = [{"hosts": [spec.ingress.host] if spec.ingress.host else [],
                        "secretName": spec.ingress.tls.secret_name}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": _meta(name, namespace),
            "spec": body}


def gateway_defaults(name: str, namespace: str, spec: ModelDeploymentSpec,
                     default_parent: dict[str, str] | None, domain: str | None) -> ModelDeploymentSpec:
    """The spec with spec.gateway's parentRefs and hostnames filled in (the operator's Gateway, the
    Ingress's default host), so the HTTPRoute and the status URL agree."""
    if spec.gateway is None:
        return spec
    gw = spec.gateway
    update: dict[str, Any] = {}
    if not gw.parent_refs:
        if not default_parent:
            raise InvalidSpec("spec.gateway.parentRefs is empty and the operator has no default Gateway: set "
                              "spec.gateway.parentRefs, or the chart value operator.gateway (MODELOPS_GATEWAY)")
        update["parent_refs"] = [ParentRef.model_validate(default_parent)]
    if not gw.hostnames:
        if not domain:
            raise InvalidSpec("spec.gateway.hostnames is empty and the operator has no domain for the default "
                              "<name>.<namespace>.<domain>: set spec.gateway.hostnames, or the chart value "
                              "operator.ingressDomain (MODELOPS_INGRESS_DOMAIN)")
        update["hostnames"] = [f"{name}.{namespace}.{domain}"]
    return spec.model_copy(update={"gateway": gw.model_copy(update=update)}) if update else spec


def http_route(name: str, namespace: str, spec: ModelDeploymentSpec, canary_weight: int = 0) -> dict[str, Any] | None:
    """The HTTPRoute: all to the stable Service, or with the canary strategy `canary_weight` percent to
    the canary's (a backendRef of weight 0 takes no request, so the canary's stays listed throughout)."""
    if spec.gateway is None:
        return None
    backends = [{"name": name, "port": SERVICE_PORT, "weight": 100 - canary_weight}]
    if spec.canary:
        backends.append({"name": canary_name(name), "port": SERVICE_PORT, "weight": canary_weight})
    parents = [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": p.name,
                **({"namespace": p.namespace} if p.namespace else {}),
                **({"sectionName": p.section_name} if p.section_name else {})} for p in spec.gateway.parent_refs]
    return {
        "apiVersion": GATEWAY_API, "kind": "HTTPRoute", "metadata": _meta(name, namespace),
        "spec": {"parentRefs": parents, "hostnames": list(spec.gateway.hostnames),
                 "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": spec.gateway.path}}],
                            "backendRefs": backends}]},
    }


def pdb(name: str, namespace: str, spec: ModelDeploymentSpec) -> dict[str, Any] | None:
    """Only with more than one replica: a PDB on a single pod would block node drains forever."""
    if spec.desired_replicas <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(name, namespace),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(name)}},
    }


def children(name: str, namespace: str, spec: ModelDeploymentSpec, target: ServingTarget,
             canary_weight: int = 0) -> list[dict]:
    """Everything to apply for this spec and (stable) target, in apply order. A canary's Deployment is
    not among them: it comes and goes with each canary (canary.py); its Service stays while the
    strategy is canary, so the route never names a missing backend."""
    built = [
        deployment(name, namespace, spec, target),
        service(name, namespace, spec),
        service(name, namespace, spec, canary=True) if spec.canary else None,
        hpa(name, namespace, spec),
        pdb(name, namespace, spec),
        ingress(name, namespace, spec),
        http_route(name, namespace, spec, canary_weight),
    ]
    return [obj for obj in built if obj is not None]


def absent(name: str, spec: ModelDeploymentSpec) -> list[tuple[str, str, str]]:
    """Optional children the spec no longer asks for, as (apiVersion, kind, name), to delete if they exist."""
    gone = []
    if not spec.autoscaling:
        gone.append(("autoscaling/v2", "HorizontalPodAutoscaler", name))
    if spec.desired_replicas <= 1:
        gone.append(("policy/v1", "PodDisruptionBudget", name))
    if not spec.ingress:
        gone.append(("networking.k8s.io/v1", "Ingress", name))
    if not spec.gateway:
        gone.append((GATEWAY_API, "HTTPRoute", name))
    if not spec.canary:
        gone += [("apps/v1", "Deployment", canary_name(name)), ("v1", "Service", canary_name(name))]
    return gone


def endpoint_url(name: str, namespace: str, spec: ModelDeploymentSpec) -> str:
    """Where clients call the model; for a spec filled by with_ingress_host, the host it serves. Through
    the Gateway when there is one (the only address a canary's share of traffic goes through)."""
    if spec.gateway and spec.gateway.hostnames:
        return f"http://{spec.gateway.hostnames[0]}{spec.gateway.path.rstrip('/')}/v2/models/{name}"
    if spec.ingress:
        scheme = "https" if spec.ingress.tls and spec.ingress.tls.secret_name else "http"
        host = spec.ingress.host or "<ingress-address>"
        return f"{scheme}://{host}{spec.ingress.path.rstrip('/')}/v2/models/{name}"
    return f"http://{name}.{namespace}.svc:{SERVICE_PORT}/v2/models/{name}"
