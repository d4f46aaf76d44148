"""The chart's MLflow auth settings against a real `mlflow server`, without a cluster: the rendered
container (args, env, basic_auth.ini, the generated Secret) started as a local process, then the
`helm test` pods' own scripts run against it. Proves what rendering alone cannot: MLflow accepts the
config file and the generated password, /health answers without credentials (the probes), anonymous
requests get 401 and the operator's credentials 200.

Needs MLflow's `auth` extra (Flask-WTF), as the training image does for the chart's MLflow."""

from __future__ import annotations

import base64
import http.server
import importlib.util
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .. import support
from .conftest import NAMESPACE, RELEASE, find, one, pod_spec, render

MLFLOW = f"{RELEASE}-mlflow"
IN_CLUSTER = f"http://{MLFLOW}.{NAMESPACE}.svc:5000"


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    if importlib.util.find_spec("flask_wtf") is None:
        pytest.skip("MLflow's auth extra is not installed (mlflow[auth]): the basic-auth app needs Flask-WTF")
    return render(sets={"mlflow.auth.enabled": "true"})


def secrets_of(docs: list[dict]) -> dict[str, dict[str, str]]:
    return {s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
            for s in find(docs, "Secret")}


def resolve(container: dict, secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The container's env as the kubelet would set it, secretKeyRefs read from the rendered Secrets."""
    env = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = secrets[ref["name"]][ref["key"]]
    return env


@pytest.fixture(scope="module")
def server(docs, tmp_path_factory) -> Iterator[str]:
    """The chart's MLflow container as a local process: its args and env, with the data volume and the
    config mount moved under a temporary folder, one worker, a free local port."""
    tmp = tmp_path_factory.mktemp("mlflow-auth")
    secrets = secrets_of(docs)
    [c] = pod_spec(one(docs, "Deployment", MLFLOW))["containers"]
    env = resolve(c, secrets)
    config = one(docs, "ConfigMap", f"{MLFLOW}-auth")["data"]["basic_auth.ini"]
    (tmp / "basic_auth.ini").write_text(config.replace("sqlite:////mlflow/", f"sqlite:///{tmp}/"))
    env.update(MLFLOW_AUTH_CONFIG_PATH=str(tmp / "basic_auth.ini"), HOME=str(tmp),
               MLFLOW_BACKEND_STORE_URI=env["MLFLOW_BACKEND_STORE_URI"].replace("////mlflow/", f"///{tmp}/"),
               MLFLOW_ARTIFACTS_DESTINATION=str(tmp / "artifacts"))
    port = support.free_port()
    args = [a for a in c["args"] if not a.startswith(("--host=", "--port=", "--workers="))]
    args += ["--host=127.0.0.1", f"--port={port}", "--workers=1"]
    bin_dir = Path(sys.executable).parent
    log = tmp / "mlflow.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(bin_dir / c["command"][0]), *args], stdout=out, stderr=subprocess.STDOUT,
                                cwd=tmp, start_new_session=True,
                                env={**os.environ, **env, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert proc.poll() is None, f"mlflow server exited: {log.read_text()[-3000:]}"
        with urllib.request.urlopen(url + "/health", timeout=2) as r:  # no credentials: what the probes send
            return r.status == 200

    try:
        support.wait_until("the chart's MLflow with basic auth", healthy, timeout=180, interval=0.5, ignore=(OSError,))
        yield url
    finally:
        support.stop_process_group(proc)


def run_test_pod(docs: list[dict], name: str, url: str) -> subprocess.CompletedProcess:
    """A `helm test` pod's script, pointed at the local server, with its env resolved from the Secrets."""
    secrets = secrets_of(docs)
    [c] = pod_spec(one(docs, "Pod", name))["containers"]
    script = c["args"][0].replace(IN_CLUSTER, url)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **resolve(c, secrets)})


def test_helm_test_of_auth_passes_against_the_chart_s_mlflow(docs, server):
    res = run_test_pod(docs, f"{RELEASE}-test-mlflow-auth", server)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "auth: anonymous request: 401 (expected 401)" in res.stdout
    assert "auth: operator's credentials: 200 (expected 200)" in res.stdout


def test_helm_test_of_the_registry_authenticates(docs, server):
    res = run_test_pod(docs, f"{RELEASE}-test-mlflow", server)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "registry answers" in res.stdout


class OpenServer(http.server.BaseHTTPRequestHandler):
    """Answers 200 to everything, like an MLflow without auth."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def test_the_auth_test_fails_against_a_server_that_lets_anonymous_requests_through(docs):
    # the check is not vacuous: MLflow without auth (here: a stand-in that accepts every request) fails it
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OpenServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        res = run_test_pod(docs, f"{RELEASE}-test-mlflow-auth", f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
    assert res.returncode != 0 and "auth: anonymous request: 200 (expected 401)" in res.stdout, res.stdout
