"""The operator's Prometheus metrics (served at /metrics by http_server.py)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PHASES = ("Pending", "Exporting", "RollingOut", "Canary", "Held", "Verifying", "Ready", "RolledBack", "Failed")
_STEP_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)

RECONCILES = Counter("modelops_operator_reconciles_total", "Reconciliations of ModelDeployments.", ["result"])
RECONCILE_SECONDS = Histogram(
    "modelops_operator_reconcile_duration_seconds", "Time of one reconciliation.", buckets=_STEP_BUCKETS
)
EXPORTS = Counter("modelops_operator_exports_total", "ONNX exports by result.", ["result"])
EXPORT_SECONDS = Histogram("modelops_operator_export_duration_seconds", "ONNX export time.", buckets=_STEP_BUCKETS)
ROLLOUTS = Counter("modelops_operator_rollouts_total", "Rollouts by result.", ["result"])
ROLLOUT_SECONDS = Histogram(
    "modelops_operator_rollout_duration_seconds", "Time from apply to Available.", buckets=_STEP_BUCKETS
)
SMOKE_CHECKS = Counter("modelops_operator_smoke_checks_total", "Smoke check runs by result.", ["result"])
ROLLBACKS = Counter("modelops_operator_rollbacks_total", "Rollbacks by reason.", ["reason"])
PHASE = Gauge(
    "modelops_operator_modeldeployment_phase",
    "1 for the phase each ModelDeployment is in, 0 for the others.",
    ["namespace", "name", "phase"],
)
VERDICTS = Counter("modelops_operator_verdicts_total",
                   "Behaviour verdicts by step (registry, replay, live: a canary step) and outcome.",
                   ["step", "outcome"])
CANARY_WEIGHT = Gauge("modelops_operator_canary_weight",
                      "Percent of the Gateway's traffic a ModelDeployment's canary takes now (0: none running).",
                      ["namespace", "name"])
WEBHOOKS = Counter("modelops_operator_webhooks_total", "MLflow webhook deliveries by result.", ["result"])
ALERT_WEBHOOKS = Counter("modelops_operator_alert_webhooks_total",
                         "Alertmanager notifications (POST /webhooks/alertmanager) by result.", ["result"])
RETRAINS = Counter("modelops_operator_retrains_total",
                   "Retrain triggers by outcome (Started, Skipped, Failed: the Job was refused).", ["outcome"])

for _result in ("success", "failure"):
    for _counter in (RECONCILES, EXPORTS, ROLLOUTS, SMOKE_CHECKS):
        _counter.labels(_result)
for _reason in ("ExportFailed", "RolloutFailed", "VerificationFailed", "RegistryMetricRegressed", "BehaviourRegressed",
                "CanaryFailed"):
    ROLLBACKS.labels(_reason)
for _step in ("registry", "replay", "live"):
    for _outcome in ("Pass", "Fail", "Inconclusive"):
        VERDICTS.labels(_step, _outcome)
for _result in ("accepted", "rejected"):
    WEBHOOKS.labels(_result)
    ALERT_WEBHOOKS.labels(_result)
for _outcome in ("Started", "Skipped", "Failed"):
    RETRAINS.labels(_outcome)


def set_phase(namespace: str, name: str, phase: str) -> None:
    for p in PHASES:
        PHASE.labels(namespace, name, p).set(1 if p == phase else 0)


def forget(namespace: str, name: str) -> None:
    try:
        CANARY_WEIGHT.remove(namespace, name)
    except KeyError:
        pass
    for p in PHASES:
        try:
            PHASE.remove(namespace, name, p)
        except KeyError:
            pass
