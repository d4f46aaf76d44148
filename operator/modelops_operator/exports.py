"""Export Jobs: the objects that run `modelops-export` in the ModelDeployment's namespace, and what a
Job's state means. Pure functions; the I/O is in exporting.py.

Why a Job and not the operator: an MLflow model's pickle runs whatever its author wrote. Run in the
operator, that code would hold the operator's cluster-wide rights and MLflow credentials. In a Job
it runs in the user's namespace, without a ServiceAccount token, with the namespace's own MLflow
credentials (spec.model.credentialsSecret), behind a NetworkPolicy that lets it reach MLflow and
DNS only, under memory and time limits that end it without touching anything that serves.

One Job per (model, version, export settings, exporter image): its name is derived from those, so
ten ModelDeployments that follow one alias join one Job, and a restarted operator finds the Job it
started instead of starting another.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .manifests import job_container_security_context, owner_reference, pod_security_context
from .spec import ModelDeploymentSpec

RESULT_PATH = "/dev/termination-log"
EXPORT_COMPONENT = "modelops-export"
NETWORK_POLICY_NAME = "modelops-export"
# modelops-export's exit codes (training/modelops_training/errors.py): which ones a retry can fix.
EXIT_CODES = {
    2: "InvalidModelUri",
    3: "ModelNotFound",
    4: "RegistryUnavailable",
    5: "UnsupportedFlavor",
    6: "ExportFailed",
    7: "ParityFailed",
}
RETRYABLE_EXIT_CODES = frozenset({4})
RETRIES = 3  # retryable exits the Job itself retries (with Kubernetes' backoff) before it fails
# A pod that cannot start at all: waiting for it would only run into the deadline.
STUCK_WAITING_REASONS = frozenset({
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
    "CreateContainerConfigError", "CreateContainerError",
})


def labels(model: str, version: str, digest: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": EXPORT_COMPONENT,
        "app.kubernetes.io/managed-by": "modelops-operator",
        "modelops.io/model": _label_value(model),
        "modelops.io/model-version": _label_value(version),
        "modelops.io/export-hash": digest,
    }


def active_selector() -> str:
    """Every export Job this operator runs (the global concurrency limit counts these)."""
    return f"app.kubernetes.io/name={EXPORT_COMPONENT},app.kubernetes.io/managed-by=modelops-operator"


def _label_value(value: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", value)[:63].strip("-._")
    return cleaned or "x"


def settings_hash(model: str, version: str, spec: ModelDeploymentSpec, image: str) -> str:
    """Same model version, settings, resources and exporter image -> same Job (and the same export):
    raising a memory limit after an OOM kill starts a new Job instead of joining the failed one."""
    key = {"model": model, "version": version, "opset": spec.export.opset, "quantize": spec.export.quantize,
           "tolerance": spec.export.tolerance, "resources": spec.export.resources, "image": image}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]


def job_name(model: str, version: str, digest: str) -> str:
    """A DNS label (63 characters at most) naming the model, version and settings."""
    slug = re.sub(r"[^a-z0-9-]", "-", model.lower()).strip("-")[:30].strip("-") or "model"
    return f"export-{slug}-v{re.sub(r'[^0-9a-z]', '', version.lower())[:8]}-{digest}"


def strip_userinfo(uri: str | None) -> str | None:
    """The URI without user:password@; credentials travel in a Secret, never in a URI we copy."""
    if not uri:
        return uri
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


@dataclass(frozen=True)
class JobSettings:
    """Operator-wide settings of every export Job (chart values, read from the environment)."""

    image: str
    deadline_seconds: int = 900
    ttl_seconds: int = 3600
    pull_policy: str = "IfNotPresent"


def job(name: str, namespace: str, md: ModelDeploymentSpec, version: str, digest: str, tracking_uri: str | None,
        settings: JobSettings, owner: dict[str, Any]) -> dict[str, Any]:
    """The export Job for `models:/<model>/<version>`, owned (not controlled) by `owner`: other
    ModelDeployments that join it add themselves as owners, and it goes only when all of them do."""
    model = md.model.name
    args = [f"models:/{model}/{version}", "--out", "/tmp/export", "--opset", str(md.export.opset),
            "--quantize", md.export.quantize, "--tolerance", repr(md.export.tolerance),
            "--result-file", RESULT_PATH]
    env = [{"name": "MLFLOW_DISABLE_TELEMETRY", "value": "true"}, {"name": "HOME", "value": "/tmp"}]
    if tracking_uri:
        env.append({"name": "MLFLOW_TRACKING_URI", "value": strip_userinfo(tracking_uri)})
    container: dict[str, Any] = {
        "name": "export",
        "image": settings.image,
        "imagePullPolicy": settings.pull_policy,
        "command": ["modelops-export"],
        "args": args,
        "env": env,
        "resources": md.export.resources,
        # the exporter writes its result (or its error) here; an OOM kill leaves the log's tail instead
        "terminationMessagePath": RESULT_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": job_container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if md.model.credentials_secret:
        container["envFrom"] = [{"secretRef": {"name": md.model.credentials_secret}}]
    job_labels = labels(model, version, digest)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": job_labels,
            "annotations": {"modelops.io/model-uri": f"models:/{model}/{version}"},
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "backoffLimit": RETRIES,
            "activeDeadlineSeconds": settings.deadline_seconds,
            "ttlSecondsAfterFinished": settings.ttl_seconds,
            # Only an unreachable registry is worth another pod; any other exit is the version's fault.
            "podFailurePolicy": {"rules": [
                {"action": "Count", "onExitCodes": {"containerName": "export", "operator": "In",
                                                    "values": sorted(RETRYABLE_EXIT_CODES)}},
                {"action": "FailJob", "onExitCodes": {"containerName": "export", "operator": "NotIn",
                                                      "values": [0, *sorted(RETRYABLE_EXIT_CODES)]}},
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]},
            "template": {
                "metadata": {"labels": job_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(),
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}}],
                },
            },
        },
    }


def failed_before(job: dict[str, Any], started_at: float | None) -> bool:
    """Whether `job` failed before an attempt that started at `started_at` (epoch seconds): its failure
    belongs to an earlier attempt, so a new attempt runs the export again instead of inheriting it."""
    from datetime import datetime

    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Failed" and c.get("status") == "True" and started_at:
            stamp = c.get("lastTransitionTime")
            when = stamp.timestamp() if isinstance(stamp, datetime) else (
                datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp() if stamp else 0.0)
            return when < started_at
    return False


def joined_owners(existing: list[dict] | None, owner: dict[str, Any]) -> list[dict] | None:
    """The Job's owner list with `owner` added, or None when it is already there."""
    existing = list(existing or [])
    if any(ref.get("uid") == owner["metadata"]["uid"] for ref in existing):
        return None
    return [*existing, owner_reference(owner)]


def network_policy(namespace: str, peer: dict[str, Any] | None, port: int | None) -> dict[str, Any]:
    """Egress for export pods: DNS, and MLflow only (`peer` is a NetworkPolicyPeer; None when the
    MLflow address is unknown, which leaves DNS alone)."""
    egress: list[dict[str, Any]] = [{
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }]
    if peer is not None:
        rule: dict[str, Any] = {"to": [peer]}
        if port:
            rule["ports"] = [{"protocol": "TCP", "port": port}]
        egress.append(rule)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": NETWORK_POLICY_NAME, "namespace": namespace,
                     "labels": {"app.kubernetes.io/managed-by": "modelops-operator"}},
        "spec": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": EXPORT_COMPONENT}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": egress,
        },
    }


def mlflow_address(tracking_uri: str | None) -> tuple[str | None, int | None, str | None, str | None]:
    """(host, port, service, service namespace) of a tracking URI; the service pair only for a
    `<service>.<namespace>.svc[.cluster.local]` host."""
    if not tracking_uri:
        return None, None, None, None
    parts = urlsplit(tracking_uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None, None, None, None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    match = re.fullmatch(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.cluster\.local)?\.?", parts.hostname)
    if match:
        return parts.hostname, port, match[1], match[2]
    return parts.hostname, port, None, None


# --- what a Job's state means ------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    """Running, Succeeded (with the exporter's result), Retrying (a retryable exit, the Job goes on),
    or Failed (reason and message, `retryable` when only the registry was at fault)."""

    state: str
    reason: str = ""
    message: str = ""
    result: dict[str, Any] | None = None
    retryable: bool = False

    @property
    def done(self) -> bool:
        return self.state in ("Succeeded", "Failed")


def _result(text: str | None) -> dict[str, Any] | None:
    try:
        value = json.loads(text or "")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _terminated(pod: dict) -> dict | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
        if term:
            return term
    return None


def _waiting(pod: dict) -> dict | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting:
            return waiting
    return None


def newest_first(pods: list[dict]) -> list[dict]:
    return sorted(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "", reverse=True)


def describe_failure(term: dict) -> tuple[str, str, bool]:
    """(reason, message, retryable) of a terminated export container."""
    code = term.get("exitCode")
    result = _result(term.get("message"))
    if term.get("reason") == "OOMKilled":
        return ("OOMKilled", "the export pod was OOM-killed (exit code 137): raise "
                "spec.export.resources.limits.memory", False)
    if result and not result.get("ok", True):
        reason = EXIT_CODES.get(result.get("exit_code") or code, "ExportFailed")
        return reason, str(result.get("error") or "the exporter failed"), bool(result.get("retryable"))
    reason = EXIT_CODES.get(code, "ExportFailed")
    detail = f"exit code {code}" + (f" ({term['reason']})" if term.get("reason") else "")
    tail = (term.get("message") or "").strip()
    return reason, f"the exporter failed with {detail}" + (f": {tail}" if tail else ""), code in RETRYABLE_EXIT_CODES


def outcome(job: dict, pods: list[dict]) -> Outcome:
    """What an export Job's status and its pods say, newest pod first."""
    status = job.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    pods = newest_first(pods)
    if "Complete" in conditions or "SuccessCriteriaMet" in conditions:
        for pod in pods:
            term = _terminated(pod)
            if term and term.get("exitCode") == 0:
                result = _result(term.get("message"))
                if result and result.get("ok"):
                    return Outcome("Succeeded", "Exported", "export Job succeeded", result=result)
        return Outcome("Failed", "ExportFailed", "the export Job completed without a readable result "
                       f"in its termination message ({RESULT_PATH})")
    failed = conditions.get("Failed") or conditions.get("FailureTarget")
    if failed:
        if failed.get("reason") == "DeadlineExceeded":
            return Outcome("Failed", "DeadlineExceeded", "the export Job ran past its deadline "
                           f"({job.get('spec', {}).get('activeDeadlineSeconds')} s) and was stopped")
        for pod in pods:
            term = _terminated(pod)
            if term and term.get("exitCode") not in (None, 0):
                reason, message, retryable = describe_failure(term)
                return Outcome("Failed", reason, message, retryable=retryable)
        return Outcome("Failed", failed.get("reason") or "ExportFailed",
                       failed.get("message") or "the export Job failed")
    for pod in pods:
        waiting = _waiting(pod)
        if waiting and waiting.get("reason") in STUCK_WAITING_REASONS:
            return Outcome("Failed", waiting["reason"], f"the export pod cannot start: {waiting['reason']}: "
                           f"{waiting.get('message') or ''}".rstrip(": "))
    retried = [term for pod in pods if (term := _terminated(pod)) and term.get("exitCode") in RETRYABLE_EXIT_CODES]
    if retried:
        _, message, _ = describe_failure(retried[0])
        return Outcome("Retrying", "ExportRetrying", f"{len(retried)} of {RETRIES + 1} attempts failed, "
                       f"retrying: {message}")
    phase = ((pods[0].get("status") or {}).get("phase") if pods else None) or "Pending"
    return Outcome("Running", "ExportRunning", f"export Job pod {phase}")
