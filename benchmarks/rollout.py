"""Rollout benchmark: apply -> Ready, failed check -> last good version serving, operator cost at idle.

On the real local cluster (.data/cluster/kubeconfig, images loaded), with a real `mlflow server`
reachable from the pods and the operator as a host process (started as tests/operator/conftest.py
does, but watching only the benchmark's own namespace), this measures

  1. apply -> Ready of a breast-cancer MLP and a digits CNN (3 epochs each): N runs per model, each
     on a fresh ModelDeployment name and a freshly trained version (so each exports for the first
     time), plus runs on an already exported version (export reused). The operator stamps
     status.attempt (epoch seconds): startedAt (version resolved), exportedAt, availableAt,
     verifiedAt; so resolve = startedAt - apply, export = exportedAt - startedAt,
     rollout = availableAt - exportedAt, smoke = verifiedAt - availableAt, and total = apply until
     a watch on the ModelDeployment delivers phase Ready.
  2. (and 2b: an edit while a version that can never become available rolls out, -> the edit's
     attempt starting, target < 5 s)
     a version that answers NaN (sabotage="nan") applied over a Ready one: from the failed smoke check
     (the watch delivering Verified=False/VerificationFailed; conditions' lastTransitionTime has
     1 s resolution) to status.attempt.restoredAt (the last good version Available again), while a
     client sends a request through the Service every 50 ms (a new connection each, so kube-proxy
     picks a pod each time) and counts failed requests and answers from the broken version.
  3. the operator's RSS and CPU (utime+stime from /proc/<pid>/stat over a window, % of one core),
     with 0 and with K idle ModelDeployments. K serving pods do not fit on a 2-core machine, so an
     idle object here is a ModelDeployment pinned to a version the registry does not have, settled
     as phase Failed (VersionNotFound): no children and no pods, but watched by kopf like any other
     and listed by the alias poller. A fresh operator process is used for this section.
  4. the images' sizes (the operator's must stay slim: exports run in Jobs from the training image),
     and the operator's RSS after the exports of sections 1-2 and with K idle objects.

Prints one table with the targets (apply -> Ready < 60 s for these small models with images present,
failed check -> old version serving < 15 s, 0 failed or broken answers) and writes
benchmarks/results/rollout.json. Everything it creates (namespaces, MLflow, operator processes) is
removed on the way out, also on failure. The machine is shared: before each section it waits (up to
--quiet-wait seconds) until no chart or operator test run and no other operator process is running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from tests.operator.conftest import (  # noqa: E402  (needs ROOT on sys.path)
    KUBECONFIG,
    SERVING_IMAGE,
    Operator,
    kubectl,
    pod_reachable_registry,
)

RESULTS = ROOT / "benchmarks" / "results" / "rollout.json"
GROUP, VERSION, PLURAL = "modelops.io", "v1alpha1", "modeldeployments"
SETTLED = ("Ready", "RolledBack", "Failed")
BUSY = ("pytest tests/charts", "pytest tests/operator")
TARGET_READY_S = 60.0
TARGET_ROLLBACK_S = 15.0
TARGET_SUPERSEDE_S = 5.0  # issue 12: an edit supersedes a running attempt within 5 s
TARGET_OPERATOR_IMAGE_MB = 400.0  # the slim control plane: no torch, no exporter (issue 11)
TARGET_OPERATOR_RSS_MIB = 150.0
IMAGES = ("modelops/operator:dev", "modelops/training:dev", "modelops/inference:dev")
OWN_PIDS: set[int] = set()  # operator processes this benchmark started


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- machine ---------------------------------------------------------------------------------------

def pgrep(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def other_operators() -> list[int]:
    return [p for p in pgrep("bin/modelops-operator") if p not in OWN_PIDS]


def wait_quiet(max_wait: float, interval: float = 20.0) -> dict:
    """Wait until no chart/operator test run and no other operator process runs (timings not skewed;
    and another cluster-wide operator would reconcile this benchmark's objects against its own MLflow)."""
    started = time.monotonic()
    while True:
        busy = [p for p in BUSY if pgrep(p)]
        others = other_operators()
        if others:
            busy.append(f"other modelops-operator pids {others}")
        waited = round(time.monotonic() - started, 1)
        if not busy:
            return {"waited_s": waited, "quiet": True}
        if waited >= max_wait:
            log(f"still busy after {waited:.0f} s ({busy}); going on, recorded as not quiet")
            return {"waited_s": waited, "quiet": False, "busy": busy}
        log(f"waiting for a quiet machine: {busy}")
        time.sleep(interval)


class BusyMonitor:
    """Samples every few seconds whether a test run or another operator is running, so a section that
    was disturbed after its quiet start says so in the results."""

    def __init__(self, interval: float = 5.0):
        self.samples: list[tuple[float, list[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            busy = [p for p in BUSY if pgrep(p)] + [f"other modelops-operator pid {p}" for p in other_operators()]
            self.samples.append((time.time(), busy))
            self._stop.wait(interval)

    def during(self, start: float, end: float) -> list[str]:
        return sorted({b for t, busy in self.samples if start <= t <= end for b in busy})

    def stop(self) -> None:
        self._stop.set()


def proc_stat(pid: int) -> tuple[float, int, int]:
    """(cpu seconds utime+stime, VmRSS bytes, VmHWM bytes) of one process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14 and 15 of stat)
    mem = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            mem[key] = int(value.split()[0]) * 1024
    return cpu, mem["VmRSS"], mem["VmHWM"]


def cpu_window(pid: int, seconds: float) -> dict:
    cpu0, _, _ = proc_stat(pid)
    t0 = time.monotonic()
    time.sleep(seconds)
    cpu1, rss, hwm = proc_stat(pid)
    wall = time.monotonic() - t0
    return {"window_s": round(wall, 1), "cpu_s": round(cpu1 - cpu0, 2),
            "cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / wall, 2),
            "rss_mib": round(rss / 2**20, 1), "peak_rss_mib": round(hwm / 2**20, 1)}


def environment() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    libs = {}
    for pkg in ("kopf", "kubernetes", "mlflow", "torch", "onnxruntime", "httpx"):
        try:
            libs[pkg] = version(pkg)
        except PackageNotFoundError:
            libs[pkg] = "absent"
    node = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"][0]
    images = {n for img in node["status"].get("images") or [] for n in img.get("names") or []}
    server = json.loads(kubectl("version", "-o", "json").stdout).get("serverVersion", {})
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]},
        "cluster": {"kubernetes": server.get("gitVersion"), "node": node["metadata"]["name"],
                    "runtime": node["status"]["nodeInfo"].get("containerRuntimeVersion"),
                    "serving_image": SERVING_IMAGE,
                    "serving_image_present": any(n.endswith(SERVING_IMAGE) for n in images)},
        "versions": libs,
        "git_commit": commit,
    }


# --- cluster and MLflow ----------------------------------------------------------------------------

def image_sizes() -> dict[str, float | None]:
    """Each project image's size in MB as docker reports it (None when not built)."""
    sizes = {}
    for image in IMAGES:
        res = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", image], capture_output=True, text=True)
        sizes[image] = round(int(res.stdout) / 1e6, 1) if res.returncode == 0 else None
    return sizes


def api_clients():
    import kubernetes

    client = kubernetes.config.new_client_from_config(config_file=KUBECONFIG)
    return kubernetes.client.CustomObjectsApi(client), kubernetes.client.CoreV1Api(client)


class Watcher:
    """Every ModelDeployment event in one namespace, stamped with the time the client received it."""

    def __init__(self, namespace: str):
        self.namespace = namespace
        self.custom, _ = api_clients()
        self.events: dict[str, list[tuple[float, dict]]] = {}
        self.cond = threading.Condition()
        self.stopped = threading.Event()
        listing = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        self.rv = listing["metadata"]["resourceVersion"]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        while not self.stopped.is_set():
            w = watch.Watch()
            try:
                for ev in w.stream(self.custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace,
                                   PLURAL, resource_version=self.rv, timeout_seconds=20):
                    now = time.time()
                    obj = ev["object"]
                    if ev["type"] == "ERROR":  # e.g. 410 Gone as an event: start again from a fresh list
                        raise ApiException(status=(obj or {}).get("code") or 500)
                    self.rv = obj["metadata"]["resourceVersion"]
                    with self.cond:
                        self.events.setdefault(obj["metadata"]["name"], []).append((now, obj))
                        self.cond.notify_all()
                    if self.stopped.is_set():
                        break
            except ApiException as exc:  # 410 Gone: start again from a fresh list
                if exc.status == 410:
                    self.rv = self.custom.list_namespaced_custom_object(
                        GROUP, VERSION, self.namespace, PLURAL)["metadata"]["resourceVersion"]
                else:
                    time.sleep(1)
            except Exception:  # connection hiccup: resume from the last resourceVersion
                time.sleep(1)

    def wait_for(self, name: str, predicate, since: float, timeout: float, what: str) -> tuple[float, dict]:
        """The first event for `name` received at or after `since` whose object satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self.cond:
            while True:
                history = self.events.get(name, [])
                for t, obj in history[seen:]:
                    if t >= since and predicate(obj):
                        return t, obj
                seen = len(history)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    last = history[-1][1].get("status") if history else None
                    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {name}: {what}; "
                                       f"last status {json.dumps(last)[:1500]}")
                self.cond.wait(min(remaining, 1.0))

    def stop(self) -> None:
        self.stopped.set()


def condition(obj: dict, type_: str) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


def start_operator(registry: dict, namespace: str, log_dir: Path, stack: contextlib.ExitStack,
                   alias_poll_seconds: int) -> Operator:
    log_dir.mkdir(parents=True, exist_ok=True)
    op = Operator(registry, log_dir)
    # Only the benchmark's namespace: a cluster-wide operator would also reconcile other test runs'
    # ModelDeployments (against the wrong MLflow), and theirs ours.
    op.env["MODELOPS_WATCH_NAMESPACE"] = namespace
    op.env["MODELOPS_ALIAS_POLL_SECONDS"] = str(alias_poll_seconds)
    stack.callback(op.stop)
    op.start()
    OWN_PIDS.add(op.proc.pid)
    return op


def create_namespace(prefix: str, stack: contextlib.ExitStack) -> str:
    name = f"{prefix}-{os.urandom(3).hex()}"
    kubectl("create", "namespace", name)

    def delete():
        res = kubectl("delete", "namespace", name, "--wait=true", "--timeout=180s", check=False)
        note = "" if res.returncode == 0 else f" (still terminating: {res.stderr.strip()})"
        log(f"deleted namespace {name}{note}")

    stack.callback(delete)
    return name


def manifest(name: str, model: str, version: str) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": name},
        # the rollout mechanics alone, on quickly trained versions: behaviour verdicts (which would refuse
        # the NaN version at its registry metrics, before the smoke checks timed here) are benchmarks/analysis.py's
        "spec": {"model": {"name": model, "version": version}, "serving": {"imagePullPolicy": "Never"},
                 "analysis": {"enabled": False}},
    }


def wait_pods_gone(core, namespace: str, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/instance={name}").items:
        if time.monotonic() > deadline:
            log(f"pods of {name} still there after {timeout:.0f} s")
            return
        time.sleep(1)


def train_versions(registry: dict, dataset: str, model: str, count: int, epochs: int, first_seed: int = 0,
                   sabotage: str | None = None) -> list[str]:
    from modelops_training.train import TrainConfig, train

    versions = []
    for i in range(count):
        with contextlib.redirect_stdout(sys.stderr):  # MLflow prints run links
            result = train(TrainConfig(dataset=dataset, epochs=epochs, seed=first_seed + i, register=model,
                                       sabotage=sabotage, progress=False, tracking_uri=registry["local"]))
        versions.append(result.version)
    return versions


# --- 1. apply -> Ready -----------------------------------------------------------------------------

def apply_to_ready(custom, core, watcher: Watcher, namespace: str, name: str, model: str, version: str,
                   export: str) -> dict:
    t_apply = time.time()
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest(name, model, version))
    apply_call = time.time() - t_apply
    t_seen, obj = watcher.wait_for(name, lambda o: (o.get("status") or {}).get("phase") in SETTLED, t_apply, 300,
                                   "a settled phase")
    st = obj["status"]
    a = st.get("attempt") or {}
    row = {"name": name, "model": model, "version": version, "export": export, "phase": st["phase"],
           "apply_call_s": round(apply_call, 3), "total_s": round(t_seen - t_apply, 2)}
    if st["phase"] == "Ready":
        row.update({
            "resolve_s": round(a["startedAt"] - t_apply, 2),
            "export_s": round(a["exportedAt"] - a["startedAt"], 2),
            "rollout_s": round(a["availableAt"] - a["exportedAt"], 2),
            "smoke_s": round(a["verifiedAt"] - a["availableAt"], 2),
            "status_s": round(t_seen - a["verifiedAt"], 2),  # verifiedAt until the client sees Ready
            "onnx_uri": (st.get("export") or {}).get("uri"),
        })
    else:
        row["conditions"] = st.get("conditions")
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    wait_pods_gone(core, namespace, name)  # the next run starts on a machine without this pod
    log(f"  {name} (v{version}, export {export}): {row['phase']} in {row['total_s']} s")
    return row


# --- 2. failed check -> old version serving -----------------------------------------------------------

class Load:
    """One request through the Service every `interval` s, each on a new connection."""

    def __init__(self, url: str, name: str, rows: list[float], broken: str, interval: float = 0.05):
        self.url, self.broken, self.interval = f"{url}/v2/models/{name}/infer", broken, interval
        self.body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, len(rows)], "data": rows}]}
        self.sent, self.ok, self.failures, self.broken_answers = 0, 0, [], 0
        self.versions: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import math

        while not self._stop.is_set():
            self.sent += 1
            try:
                resp = httpx.post(self.url, json=self.body, timeout=5)
                body = resp.json() if resp.status_code == 200 else None
                version = str((body or {}).get("model_version"))
                self.versions[version] = self.versions.get(version, 0) + 1
                values = [v for o in (body or {}).get("outputs", []) for v in o.get("data", [])]
                if version == self.broken:
                    self.broken_answers += 1
                if resp.status_code != 200 or not values or not all(math.isfinite(v) for v in values):
                    self.failures.append(f"{resp.status_code}: {resp.text[:200]}")
                else:
                    self.ok += 1
            except Exception as exc:  # any failure counts
                self.failures.append(repr(exc))
            self._stop.wait(self.interval)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def patch_version(custom, namespace: str, name: str, version: str) -> int:
    obj = custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                {"spec": {"model": {"version": version}}})
    return obj["metadata"]["generation"]


def settled_at(generation: int):
    def predicate(o: dict) -> bool:
        st = o.get("status") or {}
        return st.get("observedGeneration") == generation and st.get("phase") in SETTLED
    return predicate


def failed_check_to_old_serving(custom, watcher: Watcher, namespace: str, name: str, model: str, good: str,
                                broken: str, runs: int) -> list[dict]:
    from sklearn.datasets import load_breast_cancer

    row0 = [float(x) for x in load_breast_cancer().data[0]]
    t0 = time.time()
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest(name, model, good))
    _, obj = watcher.wait_for(name, lambda o: (o.get("status") or {}).get("phase") in SETTLED, t0, 300,
                              "v1 settled")
    if obj["status"]["phase"] != "Ready":
        raise RuntimeError(f"good version {good} did not become Ready: {obj['status']}")
    _, core = api_clients()
    cluster_ip = core.read_namespaced_service(name, namespace).spec.cluster_ip
    results = []
    for i in range(runs):
        if i:  # back to the good version: a new generation, same pods (the template does not change)
            t = time.time()
            gen = patch_version(custom, namespace, name, good)
            _, obj = watcher.wait_for(name, settled_at(gen), t, 300, "good version settled again")
            if obj["status"]["phase"] != "Ready":
                raise RuntimeError(f"good version {good} did not become Ready again: {obj['status']}")
            time.sleep(2)
        with Load(f"http://{cluster_ip}:80", name, row0, broken) as load:
            time.sleep(1)
            t_apply = time.time()
            gen = patch_version(custom, namespace, name, broken)

            def check_failed(o: dict, gen=gen) -> bool:
                c = condition(o, "Verified")
                return (c.get("status") == "False" and c.get("reason") == "VerificationFailed"
                        and c.get("observedGeneration") == gen)

            t_fail, fail_obj = watcher.wait_for(name, check_failed, t_apply, 300, "the failed smoke check")
            t_settled, obj = watcher.wait_for(name, settled_at(gen), t_apply, 300, "the broken version settled")
            time.sleep(2)  # requests just after the attempt count too
        st = obj["status"]
        a = st.get("attempt") or {}
        rolled = condition(obj, "RolledBack")
        failure = condition(fail_obj, "Verified").get("message", "")
        row = {
            "run": i + 1, "good": good, "broken": broken, "phase": st["phase"], "serving": st.get("modelVersion"),
            "rolled_back_reason": rolled.get("reason"),
            "caught_at": "readiness gate" if failure.startswith("pod ") else "Service smoke checks",
            "apply_to_check_failed_s": round(t_fail - t_apply, 2),
            "check_failed_to_restored_s": round(a["restoredAt"] - t_fail, 2) if "restoredAt" in a else None,
            "check_failed_to_rolledback_seen_s": round(t_settled - t_fail, 2),
            "check_failed_condition_time": condition(fail_obj, "Verified").get("lastTransitionTime"),
            "apply_to_rolledback_seen_s": round(t_settled - t_apply, 2),
            "requests": load.sent, "requests_ok": load.ok, "requests_failed": len(load.failures),
            "answered_by_broken": load.broken_answers, "answered_by_version": load.versions,
            "failures_sample": load.failures[:5],
            "smoke_failure": failure[:300],
        }
        log(f"  run {i + 1}: {row['phase']}, check failed -> restored {row['check_failed_to_restored_s']} s, "
            f"{row['requests_failed']} failed / {row['answered_by_broken']} broken of {row['requests']} requests")
        results.append(row)
    return results


def superseded_edit(custom, watcher: Watcher, namespace: str, name: str, model: str, good: str,
                    runs: int) -> list[dict]:
    """Section 2b: a version that can never become available (an image no node has) is rolling out
    with a 600 s progress deadline; the user edits the spec back to a servable one. Measured: the edit
    -> the watch delivering the new attempt (observedGeneration of the edit), and -> Ready."""
    results = []
    for i in range(runs):
        stuck = manifest(f"{name}-{i + 1}", model, good)
        stuck["spec"]["serving"] = {"image": "modelops/never-pulled:none", "imagePullPolicy": "Never"}
        stuck["spec"]["rollout"] = {"progressDeadlineSeconds": 600}
        t0 = time.time()
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, stuck)
        watcher.wait_for(stuck["metadata"]["name"], lambda o: (o.get("status") or {}).get("phase") == "RollingOut",
                         t0, 300, "the stuck version rolling out")
        time.sleep(3)
        t_edit = time.time()
        obj = custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, stuck["metadata"]["name"], {
            "spec": {"serving": {"image": None}, "rollout": {"progressDeadlineSeconds": 120}}})
        gen = obj["metadata"]["generation"]
        t_new, _ = watcher.wait_for(stuck["metadata"]["name"],
                                    lambda o, gen=gen: (o.get("status") or {}).get("observedGeneration") == gen,
                                    t_edit, 120, "the edit's attempt")
        t_ready, obj = watcher.wait_for(stuck["metadata"]["name"], settled_at(gen), t_edit, 300, "the edit settled")
        row = {"run": i + 1, "phase": obj["status"]["phase"], "edit_to_new_attempt_s": round(t_new - t_edit, 2),
               "edit_to_settled_s": round(t_ready - t_edit, 2)}
        log(f"  run {i + 1}: edit -> new attempt {row['edit_to_new_attempt_s']} s, -> {row['phase']} "
            f"{row['edit_to_settled_s']} s")
        results.append(row)
    return results


# --- 3. operator cost at idle ----------------------------------------------------------------------

def idle_cost(registry: dict, tmp: Path, model: str, count: int, window: float, alias_poll: int,
              stack: contextlib.ExitStack, quiet_wait: float) -> dict:
    namespace = create_namespace("bench-idle", stack)
    op = start_operator(registry, namespace, tmp / "operator-idle", stack, alias_poll)
    pid = op.proc.pid
    watcher = Watcher(namespace)
    stack.callback(watcher.stop)
    custom, core = api_clients()
    time.sleep(15)  # start-up done: informers listed, first alias poll ran
    quiet0 = wait_quiet(quiet_wait)
    log(f"operator {pid} watching {namespace} with 0 ModelDeployments: {window:.0f} s CPU window")
    empty = cpu_window(pid, window)
    t_create = time.time()
    names = [f"idle-{i:03d}" for i in range(count)]
    for name in names:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest(name, model, "999"))
    last = t_create
    phases = {}
    for name in names:
        t, obj = watcher.wait_for(name, lambda o: (o.get("status") or {}).get("phase") in SETTLED, t_create, 600,
                                  "settled on the missing version")
        last = max(last, t)
        phases[name] = (obj["status"]["phase"], condition(obj, "Degraded").get("reason"))
    settle_s = last - t_create
    children = len(core.list_namespaced_pod(namespace).items) + len(
        kubectl("get", "deployments,services", "-n", namespace, "-o", "name").stdout.split())
    log(f"{count} ModelDeployments settled in {settle_s:.1f} s: {sorted(set(phases.values()))}")
    time.sleep(15)
    quiet1 = wait_quiet(quiet_wait)
    log(f"operator {pid} holding {count} idle ModelDeployments: {window:.0f} s CPU window")
    held = cpu_window(pid, window)
    return {
        "idle_object": (f"ModelDeployment with spec.model.version '999' of registered model '{model}' (a version "
                        "the registry does not have), settled as phase Failed, reason VersionNotFound: no "
                        "Deployment, Service or pod; watched by kopf (operator namespaced to the benchmark's "
                        f"namespace) and listed by the alias poller every {alias_poll} s"),
        "operator": "fresh process, no export done in it (exports run in Jobs anyway)",
        "objects": count, "phases": sorted({f"{p}/{r}" for p, r in phases.values()}), "children_created": children,
        "settle_all_s": round(settle_s, 1), "zero_objects": empty, "with_objects": held,
        "rss_delta_mib": round(held["rss_mib"] - empty["rss_mib"], 1),
        "rss_per_object_kib": round((held["rss_mib"] - empty["rss_mib"]) * 1024 / count, 1),
        "quiet": [quiet0, quiet1],
    }


# --- report ----------------------------------------------------------------------------------------

NOTES = [
    "apply = the POST that creates the ModelDeployment (what kubectl apply sends for a new object), timed from "
    "just before it; total = until a watch on the object delivers phase Ready (same host clock as the operator's "
    "status.attempt stamps).",
    "resolve includes kopf's watch delivery and handler start as well as the MLflow lookup; status = verifiedAt "
    "until the client sees Ready.",
    "export = the export Job in the ModelDeployment's namespace: pod start, the training image's python and torch "
    "imports, download, conversion, parity gate, upload; the operator only creates and follows it.",
    "failed check -> old version serving: from the watch delivering Verified=False/VerificationFailed to "
    "status.attempt.restoredAt, stamped once the last good pod template is re-applied and the Deployment is "
    "Available again (broken pod gone). The old pods were never removed (maxUnavailable 0), so they kept "
    "serving throughout; the background client shows whether any request saw otherwise.",
    "the operator runs as a host process watching only the benchmark's namespace (MODELOPS_WATCH_NAMESPACE), "
    "so it neither touches nor is touched by other test runs' ModelDeployments.",
]


def _med(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.median(vals), 2) if vals else None


def summarize(report: dict) -> list[dict]:
    """The table's rows: measurement, runs, result, target, verdict."""
    out = []
    for model, rows in report["apply_to_ready"].items():
        for export in ("first", "reused"):
            runs = [r for r in rows if r["export"] == export]
            if not runs:
                continue
            ready = [r for r in runs if r["phase"] == "Ready"]
            totals = [r["total_s"] for r in runs]
            ok = len(ready) == len(runs) and max(totals) < TARGET_READY_S
            label = "new version, first export" if export == "first" else "exported version, export reused"
            out.append({"measurement": f"apply -> Ready, {model} ({label})", "runs": len(runs),
                        "result": f"median {statistics.median(totals):.1f} s, max {max(totals):.1f} s "
                                  f"({', '.join(f'{t:.1f}' for t in totals)})",
                        "target": f"< {TARGET_READY_S:.0f} s", "verdict": "PASS" if ok else "MISS"})
            out.append({"measurement": "  median split: resolve / export / rollout / smoke / status",
                        "runs": len(ready),
                        "result": " / ".join(f"{_med(ready, k)}" for k in
                                             ("resolve_s", "export_s", "rollout_s", "smoke_s", "status_s")) + " s",
                        "target": "", "verdict": ""})
    rb = report["failed_check"]
    if rb:
        times = [r["check_failed_to_restored_s"] for r in rb]
        ok = all(r["phase"] == "RolledBack" for r in rb) and None not in times and max(times) < TARGET_ROLLBACK_S
        shown = [t for t in times if t is not None]
        out.append({"measurement": "failed check -> old version serving (check failed -> restoredAt)",
                    "runs": len(rb),
                    "result": (f"median {statistics.median(shown):.2f} s, max {max(shown):.2f} s "
                               f"({', '.join(f'{t:.2f}' for t in shown)}); caught at {rb[0]['caught_at']}")
                    if shown else "no restoredAt",
                    "target": f"< {TARGET_ROLLBACK_S:.0f} s", "verdict": "PASS" if ok else "MISS"})
        out.append({"measurement": "  apply broken -> check failed / -> RolledBack seen", "runs": len(rb),
                    "result": f"median {_med(rb, 'apply_to_check_failed_s')} s / "
                              f"{_med(rb, 'apply_to_rolledback_seen_s')} s",
                    "target": "", "verdict": ""})
        failed = sum(r["requests_failed"] for r in rb)
        broken = sum(r["answered_by_broken"] for r in rb)
        sent = sum(r["requests"] for r in rb)
        out.append({"measurement": "requests failed / answered by the broken version (50 ms client)",
                    "runs": len(rb), "result": f"{failed} / {broken} of {sent}", "target": "0 / 0",
                    "verdict": "PASS" if failed == 0 and broken == 0 else "MISS"})
    sup = report.get("superseded")
    if sup:
        times = [r["edit_to_new_attempt_s"] for r in sup]
        ok = max(times) < TARGET_SUPERSEDE_S and all(r["phase"] == "Ready" for r in sup)
        out.append({"measurement": "edit during a stuck rollout -> the edit's attempt starts", "runs": len(sup),
                    "result": f"median {statistics.median(times):.2f} s, max {max(times):.2f} s; then Ready in "
                              f"median {_med(sup, 'edit_to_settled_s')} s",
                    "target": f"< {TARGET_SUPERSEDE_S:.0f} s", "verdict": "PASS" if ok else "MISS"})
    for image, mb in (report.get("images") or {}).items():
        slim = image.startswith("modelops/operator")
        out.append({"measurement": f"image size {image}", "runs": 1,
                    "result": f"{mb:.0f} MB" if mb is not None else "not built",
                    "target": f"<= {TARGET_OPERATOR_IMAGE_MB:.0f} MB" if slim else "",
                    "verdict": ("PASS" if mb is not None and mb <= TARGET_OPERATOR_IMAGE_MB else "MISS") if slim
                    else ""})
    rss_verdict = {"target": f"<= {TARGET_OPERATOR_RSS_MIB:.0f} MiB"}
    idle = report.get("idle")
    if idle:
        z, w = idle["zero_objects"], idle["with_objects"]
        n = idle["objects"]
        out += [
            {"measurement": "operator RSS, 0 ModelDeployments", "runs": 1, "result": f"{z['rss_mib']:.1f} MiB",
             "target": "", "verdict": ""},
            {"measurement": f"operator RSS, {n} idle (Failed/VersionNotFound)", "runs": 1,
             "result": f"{w['rss_mib']:.1f} MiB (+{idle['rss_delta_mib']:.1f} MiB, "
                       f"{idle['rss_per_object_kib']:.0f} KiB each)", **rss_verdict,
             "verdict": "PASS" if w["rss_mib"] <= TARGET_OPERATOR_RSS_MIB else "MISS"},
            {"measurement": f"operator CPU, 0 / {n} idle, % of one core over {w['window_s']:.0f} s", "runs": 1,
             "result": f"{z['cpu_percent_of_one_core']:.2f} % / {w['cpu_percent_of_one_core']:.2f} %",
             "target": "", "verdict": ""},
            {"measurement": f"  {n} objects created -> all settled", "runs": 1, "result": f"{idle['settle_all_s']} s",
             "target": "", "verdict": ""},
        ]
    after = report.get("operator_after_rollouts")
    if after:
        out.append({"measurement": f"operator RSS after sections 1-2 ({after['exports']} exports, in Jobs)",
                    "runs": 1, "result": f"{after['rss_mib']:.1f} MiB (peak {after['peak_rss_mib']:.1f})",
                    **rss_verdict, "verdict": "PASS" if after["peak_rss_mib"] <= TARGET_OPERATOR_RSS_MIB else "MISS"})
    return out


def table(rows: list[dict]) -> str:
    cols = ("measurement", "runs", "result", "target", "verdict")
    heads = ("measurement", "runs", "result", "target", "PASS/MISS")
    widths = [max(len(h), *(len(str(r[c])) for r in rows)) for c, h in zip(cols, heads, strict=True)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)) + " |"
    lines = [line, "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)) + " |")
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------------

def bench(args: argparse.Namespace, report: dict, stack: contextlib.ExitStack, tmp: Path) -> None:
    res = kubectl("get", "--raw", "/readyz", check=False)
    if res.returncode != 0:
        raise SystemExit(f"no cluster answers with {KUBECONFIG}: `make cluster-up` and `make images` first. "
                         f"{res.stderr.strip()}")
    kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modelops.io", "--timeout=60s")
    report["environment"] = environment()
    report["images"] = image_sizes()
    if not report["environment"]["cluster"]["serving_image_present"]:
        raise SystemExit(f"{SERVING_IMAGE} is not loaded into the cluster: `make images` first")
    report["quiet"] = {"start": wait_quiet(args.quiet_wait)}
    monitor = BusyMonitor()
    stack.callback(monitor.stop)
    sections: dict[str, list[float]] = {}

    node = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"][0]
    node_ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    registry = stack.enter_context(pod_reachable_registry(tmp, node_ip))
    log(f"mlflow server at {registry['local']} (pods: {registry['pods']})")

    started = time.monotonic()
    bc, digits = "bench-breast-cancer", "bench-digits"
    good = train_versions(registry, "breast_cancer", bc, args.runs, args.epochs)
    broken = train_versions(registry, "breast_cancer", bc, 1, args.epochs, first_seed=100, sabotage="nan")[0]
    digit_versions = train_versions(registry, "digits", digits, args.runs, args.epochs)
    report["training"] = {"epochs": args.epochs, "seconds": round(time.monotonic() - started, 1),
                          "breast_cancer": good, "broken_nan": broken, "digits": digit_versions}
    log(f"trained {bc} {good} + broken {broken}, {digits} {digit_versions}")

    # sections 1 and 2 share one namespace and operator; both go before section 3 measures at idle
    with contextlib.ExitStack() as rollouts:
        namespace = create_namespace("bench-rollout", rollouts)
        op = start_operator(registry, namespace, tmp / "operator", rollouts, args.alias_poll_seconds)
        watcher = Watcher(namespace)
        rollouts.callback(watcher.stop)
        custom, core = api_clients()

        # 1. apply -> Ready
        report["quiet"]["apply_to_ready"] = wait_quiet(args.quiet_wait)
        sections["apply_to_ready"] = [time.time()]
        report["apply_to_ready"] = {}
        for dataset, model, versions in (("breast_cancer", bc, good), ("digits", digits, digit_versions)):
            log(f"apply -> Ready: {dataset}")
            rows = []
            for i, version in enumerate(versions):
                rows.append(apply_to_ready(custom, core, watcher, namespace, f"{model[6:]}-{i + 1}", model,
                                           version, "first"))
            for i in range(args.reused_runs):
                rows.append(apply_to_ready(custom, core, watcher, namespace, f"{model[6:]}-reuse-{i + 1}", model,
                                           versions[0], "reused"))
            report["apply_to_ready"][dataset] = rows
        report["apply_to_ready"]["breast_cancer"][0]["first_export_in_operator_process"] = True
        sections["apply_to_ready"].append(time.time())

        # 2. failed check -> old version serving
        report["quiet"]["failed_check"] = wait_quiet(args.quiet_wait)
        sections["failed_check"] = [time.time()]
        log("failed check -> old version serving")
        report["failed_check"] = failed_check_to_old_serving(custom, watcher, namespace, "rollback", bc, good[0],
                                                             broken, args.runs)
        sections["failed_check"].append(time.time())

        # 2b. an edit supersedes a rollout that cannot finish
        log("edit during a stuck rollout")
        sections["superseded"] = [time.time()]
        report["superseded"] = superseded_edit(custom, watcher, namespace, "stuck", bc, good[0], args.runs)
        sections["superseded"].append(time.time())
        _, rss, hwm = proc_stat(op.proc.pid)
        exported = sum(r["export"] == "first" for rows in report["apply_to_ready"].values() for r in rows)
        report["operator_after_rollouts"] = {"rss_mib": round(rss / 2**20, 1), "peak_rss_mib": round(hwm / 2**20, 1),
                                             "exports": exported + len(report["failed_check"])}

    # 3. operator cost at idle, on a fresh operator process
    log(f"operator cost with 0 and {args.idle} idle ModelDeployments")
    sections["idle"] = [time.time()]
    report["idle"] = idle_cost(registry, tmp, bc, args.idle, args.cpu_seconds, args.alias_poll_seconds, stack,
                               args.quiet_wait)
    sections["idle"].append(time.time())
    # what else ran during each section after its quiet start (pytest runs, other operators)
    report["disturbed_by"] = {name: monitor.during(*span) for name, span in sections.items()}


def quiet_libraries() -> None:
    """A benchmark prints its own progress: the libraries' warnings and INFO lines would bury it."""
    import logging
    import warnings

    warnings.simplefilter("ignore")
    for name in ("mlflow", "alembic", "torch", "onnxscript", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run_bench(bench, args: argparse.Namespace, report: dict, prefix: str) -> None:
    """`bench(args, report, stack, tmp)` with a temp dir and an exit stack that removes what it started
    (processes, namespaces), also on failure, the logs' tails printed first; report["seconds"] its time."""
    started = time.time()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
        try:
            bench(args, report, stack, tmp)
        except BaseException:
            log_tails(tmp)  # before the temp dir and the processes go
            raise
        finally:
            log("cleaning up")
    report["seconds"] = round(time.time() - started, 1)


def log_tails(tmp: Path) -> None:
    for path in sorted(tmp.glob("**/*.log")):
        print(f"--- {path.relative_to(tmp)}, last lines ---\n{path.read_text()[-4000:]}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="apply -> Ready runs per model (new version each), "
                   "and failed-check runs")
    p.add_argument("--reused-runs", type=int, default=1, help="extra apply -> Ready runs on an exported version")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--idle", type=int, default=50, help="idle ModelDeployments held in section 3")
    p.add_argument("--cpu-seconds", type=float, default=60, help="CPU averaging window")
    p.add_argument("--alias-poll-seconds", type=int, default=30, help="MODELOPS_ALIAS_POLL_SECONDS (chart default)")
    p.add_argument("--quiet-wait", type=float, default=600, help="max seconds to wait for other test runs")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    quiet_libraries()
    shown = {k: v for k, v in vars(args).items() if k != "out"}
    report: dict = {"settings": shown,
                    "targets": {"apply_to_ready_s": TARGET_READY_S, "failed_check_to_old_serving_s": TARGET_ROLLBACK_S,
                                "failed_or_broken_requests": 0}}
    run_bench(bench, args, report, "bench-rollout-")
    report["environment"]["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    rows = summarize(report)
    text = table(rows)
    report["summary"] = rows
    report["table"] = text.splitlines()
    report["notes"] = NOTES + [f"idle = {report['idle']['idle_object']}"]
    disturbed = {k: v for k, v in report["disturbed_by"].items() if v}
    if disturbed:
        report["notes"].append(f"also running during a section (timings may be skewed): {disturbed}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(text)
    print()
    for note in report["notes"]:
        print(f"- {note}")
    print(f"written to {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out} "
          f"in {report['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
