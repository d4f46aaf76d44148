"""The local Kubernetes behaves like Kubernetes: readiness gates Services, Services route from the
host and by DNS name, Ingress routes through the ingress controller, the HPA scales on CPU from
metrics-server, and the garbage collector follows owner references."""

from __future__ import annotations

import threading
import time
import urllib.request

import pytest

from .conftest import (
    INGRESS_PORT,
    apply,
    condition,
    deployment,
    http_get,
    kget,
    kubectl,
    service,
    wait_until,
    web_container,
)

pytestmark = pytest.mark.cluster


def ready_pods(ns: str, selector: str) -> list[dict]:
    pods = kget("-n", ns, "pods", "-l", selector)["items"]
    return [p for p in pods if condition(p, "Ready") == "True"]


def test_node_is_ready_and_system_addons_run(cluster):
    nodes = kget("nodes")["items"]
    assert len(nodes) == 1 and condition(nodes[0], "Ready") == "True"
    for name in ("coredns", "metrics-server", "traefik"):
        dep = kget("-n", "kube-system", "deployment", name)
        assert condition(dep, "Available") == "True", name


def test_deployment_with_http_readiness_probe_becomes_available(namespace):
    apply(namespace, deployment("web", [web_container()], replicas=2))
    kubectl("-n", namespace, "rollout", "status", "deployment/web", "--timeout=120s", timeout=130)
    dep = kget("-n", namespace, "deployment", "web")
    assert condition(dep, "Available") == "True"
    assert dep["status"]["readyReplicas"] == 2


def test_failing_readiness_probe_keeps_pod_unready_and_out_of_service(namespace):
    # both pods carry the Service's label and serve HTTP; only "good" passes its readiness probe
    apply(namespace,
          deployment("good", [web_container()], labels={"tier": "web"}),
          deployment("bad", [web_container(readiness_path="/no-such-page")], labels={"tier": "web"}),
          service("web", {"tier": "web"}))
    kubectl("-n", namespace, "rollout", "status", "deployment/good", "--timeout=120s", timeout=130)
    bad = wait_until("the bad pod to be running", lambda: [
        p for p in kget("-n", namespace, "pods", "-l", "app=bad")["items"]
        if p["status"].get("phase") == "Running" and p["status"].get("podIP")])[0]
    good = ready_pods(namespace, "app=good")[0]
    time.sleep(5)  # many probe periods (1 s each)
    bad = kget("-n", namespace, "pod", bad["metadata"]["name"])
    assert condition(bad, "Ready") == "False"
    assert bad["status"]["containerStatuses"][0]["ready"] is False
    # the bad pod's server works: it is unready only because of its probe
    slices = kget("-n", namespace, "endpointslices", "-l", "kubernetes.io/service-name=web")["items"]
    ready_ips = {a for s in slices for e in s.get("endpoints") or [] if e["conditions"].get("ready")
                 for a in e["addresses"]}
    assert ready_ips == {good["status"]["podIP"]}
    ip = kget("-n", namespace, "service", "web")["spec"]["clusterIP"]
    answers = {http_get(f"http://{ip}/") for _ in range(20)}
    assert answers == {good["metadata"]["name"]}


def test_service_routes_from_host_and_by_dns_name_from_another_pod(namespace):
    apply(namespace, deployment("web", [web_container()], replicas=2), service("web", {"app": "web"}),
          {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
           "spec": {"terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "client", "image": web_container()["image"], "imagePullPolicy": "Never",
                                    "command": ["sleep", "infinity"]}]}})
    kubectl("-n", namespace, "rollout", "status", "deployment/web", "--timeout=120s", timeout=130)
    names = {p["metadata"]["name"] for p in ready_pods(namespace, "app=web")}
    ip = kget("-n", namespace, "service", "web")["spec"]["clusterIP"]
    # from the host, through kube-proxy: both ready pods answer
    seen = wait_until("both pods to answer through the Service", lambda: (
        s := {http_get(f"http://{ip}/") for _ in range(30)}) == names and s)
    assert seen == names
    kubectl("-n", namespace, "wait", "--for=condition=Ready", "pod/client", "--timeout=120s", timeout=130)
    fetch = ("import urllib.request, socket; "
             f"print(socket.gethostbyname('web.{namespace}.svc.cluster.local')); "
             "print(urllib.request.urlopen('http://web/', timeout=5).read().decode().strip())")
    out = wait_until("the Service by DNS name from a pod", lambda: kubectl(
        "-n", namespace, "exec", "client", "--", "python3", "-c", fetch).stdout.split())
    assert out[0] == ip
    assert out[1] in names


def test_ingress_routes_through_the_ingress_controller_on_a_host_port(namespace):
    host = f"web.{namespace}.modelops.test"
    apply(namespace, deployment("web", [web_container()]), service("web", {"app": "web"}),
          {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
           "spec": {"rules": [{"host": host, "http": {"paths": [{
               "path": "/", "pathType": "Prefix",
               "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
    kubectl("-n", namespace, "rollout", "status", "deployment/web", "--timeout=120s", timeout=130)
    pod = ready_pods(namespace, "app=web")[0]["metadata"]["name"]
    body = wait_until("the Ingress to route", lambda: http_get(f"http://127.0.0.1:{INGRESS_PORT}/", host=host),
                      timeout=60)
    assert body == pod
    # a host no Ingress names is not routed
    with pytest.raises(urllib.error.HTTPError) as err:
        http_get(f"http://127.0.0.1:{INGRESS_PORT}/", host=f"nothing.{namespace}.modelops.test")
    assert err.value.code == 404


BURN = """
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/healthz":
            self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
            return
        x = 0
        for i in range(300000):
            x += i * i
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("", 8080), H).serve_forever()
"""


def test_hpa_reads_cpu_from_metrics_server_and_scales_up_under_load(namespace):
    # a pod that flaps to unready hides its CPU samples from the HPA: its probe skips the burning path
    burn = web_container(script=BURN, cpu="100m", readiness_path="/healthz")
    apply(namespace, deployment("burn", [burn]), service("burn", {"app": "burn"}),
          {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "burn"},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "burn"},
                    "minReplicas": 1, "maxReplicas": 3,
                    "metrics": [{"type": "Resource", "resource": {
                        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]}})
    kubectl("-n", namespace, "rollout", "status", "deployment/burn", "--timeout=120s", timeout=130)

    def hpa_status() -> dict:
        return kget("-n", namespace, "hpa", "burn").get("status", {})

    def utilisation(status: dict) -> list:
        return [m["resource"]["current"].get("averageUtilization") for m in status.get("currentMetrics") or []
                if m.get("type") == "Resource"]

    # idle: metrics-server's numbers reach the HPA (a utilisation of 0 counts)
    idle = wait_until("the HPA to report CPU utilisation",
                      lambda: (u := utilisation(hpa_status())) and u[0] is not None and u, timeout=150, interval=3)
    assert isinstance(idle[0], int)

    ip = kget("-n", namespace, "service", "burn")["spec"]["clusterIP"]
    stop = threading.Event()

    def load():
        while not stop.is_set():
            try:
                http_get(f"http://{ip}/", timeout=10)
            except OSError:
                time.sleep(0.1)

    threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        def scaled_up():
            status = hpa_status()
            assert status.get("desiredReplicas", 1) > 1, f"HPA status: {status}"
            return status

        status = wait_until("the HPA to scale the Deployment up", scaled_up, timeout=240, interval=3)
        # the reading that made the decision, not a later average that includes the new pods
        busy = utilisation(status)
        assert busy[0] > 50, f"utilisation under load: {busy}%"
        wait_until("the Deployment to have more replicas", lambda: kget(
            "-n", namespace, "deployment", "burn")["spec"]["replicas"] > 1, timeout=30)
    finally:
        stop.set()


def test_deleting_the_owner_garbage_collects_dependents(namespace):
    apply(namespace, deployment("web", [web_container()], replicas=2))
    kubectl("-n", namespace, "rollout", "status", "deployment/web", "--timeout=120s", timeout=130)
    rs = kget("-n", namespace, "replicasets", "-l", "app=web")["items"]
    assert rs and rs[0]["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    # a dependent of our own: a ConfigMap owned by the Deployment
    dep = kget("-n", namespace, "deployment", "web")
    apply(namespace, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "web-extra", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                                  "uid": dep["metadata"]["uid"]}]}})
    kubectl("-n", namespace, "delete", "deployment", "web", "--cascade=background", "--wait=false")
    wait_until("the ReplicaSet, its Pods and the owned ConfigMap to be collected", lambda: not (
        kget("-n", namespace, "replicasets")["items"] or kget("-n", namespace, "pods")["items"]
        or kubectl("-n", namespace, "get", "configmap", "web-extra", check=False).returncode == 0), timeout=90)
