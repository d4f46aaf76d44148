"""The Gateway API on the local cluster (hack/cluster/gateway-api.sh, Traefik's kubernetesGateway
provider): the shared Gateway is programmed, and an HTTPRoute of any namespace attached to it answers
on the ingress port and splits requests by its backendRefs' weights between a stable Service <name> and
a canary <name>-canary — what canary releases rest on — following a weight change within seconds."""

from __future__ import annotations

import collections
import json
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor

import pytest

from ..support import SHARED_GATEWAY
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

# answers every GET with its backend's name (keep-alive, so Traefik reuses its connections)
NAME_SERVER = """
import http.server
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"{name}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("", 8080), H).serve_forever()
"""
REQUESTS = 1000
TOLERANCE = 5  # percentage points


def backend(name: str) -> dict:
    return deployment(name, [web_container(script=NAME_SERVER.replace("{name}", name))])


def http_route(host: str, weights: dict[str, int]) -> dict:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "web"},
            "spec": {"parentRefs": [SHARED_GATEWAY.parent_ref], "hostnames": [host],
                     "rules": [{"backendRefs": [{"name": svc, "port": 80, "weight": weight}
                                                for svc, weight in weights.items()]}]}}


def route_programmed(ns: str) -> bool:
    """The route's current generation accepted by Traefik on the shared Gateway, its backends resolved."""
    route = kget("-n", ns, "httproute", "web")
    generation = route["metadata"]["generation"]
    [parent] = [p for p in route.get("status", {}).get("parents", [])
                if p["parentRef"]["name"] == SHARED_GATEWAY.name]
    assert parent["controllerName"] == "traefik.io/gateway-controller"
    conditions = {c["type"]: c for c in parent["conditions"]}
    return all(conditions[kind]["status"] == "True" and conditions[kind]["observedGeneration"] == generation
               for kind in ("Accepted", "ResolvedRefs"))


def answers(host: str, n: int) -> collections.Counter:
    """Who answered each of n requests to the ingress port with this Host header (8 at a time)."""
    url = f"http://127.0.0.1:{INGRESS_PORT}/"
    with ThreadPoolExecutor(8) as pool:
        return collections.Counter(pool.map(lambda _: http_get(url, host=host), range(n)))


@pytest.fixture(scope="module")
def gateway(cluster) -> dict:
    res = kubectl("-n", SHARED_GATEWAY.namespace, "get", "gateway", SHARED_GATEWAY.name, "-o", "json", check=False)
    assert res.returncode == 0, (
        f"no Gateway {SHARED_GATEWAY.namespace}/{SHARED_GATEWAY.name}: a cluster started before the Gateway API "
        f"was part of it; restart it (make cluster-down cluster-up). {res.stderr.strip()}")
    return json.loads(res.stdout)


def test_the_shared_gateway_is_programmed_on_the_ingress_port(gateway):
    assert gateway["spec"]["gatewayClassName"] == "traefik"
    assert condition(kget("gatewayclass", "traefik"), "Accepted") == "True"
    assert condition(gateway, "Accepted") == "True"
    assert condition(gateway, "Programmed") == "True"
    [listener] = [x for x in gateway["spec"]["listeners"] if x["name"] == SHARED_GATEWAY.section_name]
    assert (listener["protocol"], listener["port"]) == ("HTTP", INGRESS_PORT)
    assert listener["allowedRoutes"]["namespaces"]["from"] == "All"
    [status] = [x for x in gateway["status"]["listeners"] if x["name"] == SHARED_GATEWAY.section_name]
    assert condition({"status": status}, "Programmed") == "True"


def test_an_httproute_splits_traffic_by_weight_and_follows_a_weight_change(gateway, namespace):
    host = f"web.{namespace}.modelops.test"
    apply(namespace, backend("stable"), backend("canary"),
          service("web", {"app": "stable"}), service("web-canary", {"app": "canary"}))
    for name in ("stable", "canary"):
        kubectl("-n", namespace, "rollout", "status", f"deployment/{name}", "--timeout=60s", timeout=70)

    apply(namespace, http_route(host, {"web": 20, "web-canary": 80}))
    wait_until("the HTTPRoute accepted with its backends resolved", lambda: route_programmed(namespace), timeout=30)
    # Accepted is reported before Traefik's next configuration is live with both backends' endpoints:
    # in CI a first answer came back while a later one was still Traefik's 503 (no server yet)
    wait_until("the HTTPRoute to answer 50 requests in a row, from both backends",
               lambda: set(answers(host, 50)) == {"stable", "canary"}, timeout=30, interval=0.5,
               ignore=(urllib.error.URLError,))
    seen = answers(host, REQUESTS)
    assert set(seen) == {"stable", "canary"}, seen
    assert abs(100 * seen["stable"] / REQUESTS - 20) <= TOLERANCE, seen
    assert abs(100 * seen["canary"] / REQUESTS - 80) <= TOLERANCE, seen

    apply(namespace, http_route(host, {"web": 100, "web-canary": 0}))
    changed = time.monotonic()
    wait_until("every request on the stable backend after the weights became 100/0",
               lambda: answers(host, 100) == {"stable": 100}, timeout=15, interval=0.5)
    took = time.monotonic() - changed
    assert answers(host, 200) == {"stable": 200}
    wait_until("the new generation of the HTTPRoute accepted", lambda: route_programmed(namespace), timeout=15)
    print(f"weights 100/0 in effect after {took:.1f} s")
