"""Writes the chart's Grafana dashboards (inference.json, operator.json) from code, with Grafana's
foundation SDK, so panels are reviewed as Python and the JSON is never edited by hand.

    .venv/bin/python charts/modelops/dashboards/generate.py          # rewrite the JSON files
    .venv/bin/python charts/modelops/dashboards/generate.py --check  # fail if they are stale

tests/charts/ checks the committed JSON against this output, and runs every query against a real
Prometheus scraping a real modelops-serve and the operator's metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import bargauge, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import prometheus as prometheus_m
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    VariableRefresh,
    VariableSort,
)

HERE = Path(__file__).resolve().parent
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"
# Inference traffic: the model endpoints, not health checks or metadata.
INFER = 'endpoint=~"infer|predict"'
SEL = 'namespace=~"$namespace", model_name=~"$model", model_version=~"$version"'
BY = "namespace, model_name, model_version"
MODEL_LEGEND = "{{namespace}}/{{model_name}} v{{model_version}}"
# Canary vs stable: per ModelDeployment and track, whatever the version (a canary usually serves another).
TRACK_SEL = 'namespace=~"$namespace", model_name=~"$model"'
TRACK_BY = "namespace, model_name, track"
TRACK_LEGEND = "{{namespace}}/{{model_name}} {{track}}"


def stable_track(expr: str) -> str:
    """The PodMonitor copies a pod's modelops.io/track label into `track`; stable pods have none, so
    their series are named track="stable" here."""
    return f'label_replace({expr}, "track", "stable", "track", "")'


def md_namespace(expr: str) -> str:
    """An operator series per ModelDeployment with `namespace` the ModelDeployment's: the scrape sets the
    target's (the operator's) namespace and renames the metric's own label to exported_namespace."""
    return f'label_replace({expr}, "namespace", "$1", "exported_namespace", "(.+)")'


def query(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False, table_format: bool = False):
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if legend:
        q = q.legend_format(legend)
    if instant:
        q = q.instant()
    if table_format:
        q = q.format(prometheus_m.PromQueryFormat.TABLE)
    return q


def legend():
    return (common_b.VizLegendOptions().display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM).show_legend(True).calcs(["mean", "max", "lastNotNull"]))


def series(title: str, description: str, unit: str, *queries, width: int = 12, stack: bool = False):
    panel = (timeseries.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
             .span(width).height(8).legend(legend()).fill_opacity(10).line_width(1))
    if stack:
        panel = panel.stacking(common_b.StackingConfig().mode(common.StackingMode.NORMAL))
    for q in queries:
        panel = panel.with_target(q)
    return panel


def psi_thresholds():
    """The drift alerts' default thresholds (monitoring.alerts.featureDrift / predictionDrift)."""
    return dash.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps([
        Threshold(None, "green"), Threshold(0.1, "orange"), Threshold(0.25, "red")])


def dashed_thresholds():
    return common_b.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)


def datasource_variable():
    return dash.DatasourceVariable("datasource").label("Data source").type("prometheus")


def label_variable(name: str, label: str, metric_selector: str, source_label: str):
    return (dash.QueryVariable(name).label(label).datasource(DATASOURCE)
            .query(f"label_values({metric_selector}, {source_label})")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).all_value(".*"))


def inference_dashboard():
    info = "modelops_inference_model_info"
    requests = f"modelops_inference_requests_total{{{INFER}, {SEL}}}"
    duration = f"modelops_inference_request_duration_seconds_bucket{{{INFER}, {SEL}}}"
    ready = f"modelops_inference_model_ready{{{SEL}}}"
    hpa_sel = 'namespace=~"$namespace", horizontalpodautoscaler=~"$model"'

    def quantile(q: float) -> str:
        return f"histogram_quantile({q}, sum by (le, {BY}) (rate({duration}[{RATE}])))"

    track_requests = f"modelops_inference_requests_total{{{INFER}, {TRACK_SEL}}}"
    predictions = f"modelops_inference_predictions_total{{{TRACK_SEL}}}"
    served = f"modelops_inference_predictions_total{{{SEL}}}"

    def per_track(metric: str) -> str:
        return f"sum by ({TRACK_BY}) (rate({metric}[{RATE}]))"

    def score_quantile(q: float) -> str:
        return stable_track(f"histogram_quantile({q}, sum by (le, {TRACK_BY}) "
                            f"(rate(modelops_inference_prediction_score_bucket{{{TRACK_SEL}}}[{RATE}])))")

    # the operator names a ModelDeployment `name`; the servers call it model_name
    weight = ('label_replace(' + md_namespace("modelops_operator_canary_weight")
              + ', "model_name", "$1", "name", "(.+)")')

    builder = (
        dash.Dashboard("modelops / Inference").uid("modelops-inference")
        .description("Every ModelDeployment's inference endpoint, per model version (modelops-serve metrics).")
        .tags(["modelops", "inference"]).refresh("30s").time("now-1h", "now").timezone("browser")
        .with_variable(datasource_variable())
        .with_variable(label_variable("namespace", "Namespace", info, "namespace"))
        .with_variable(label_variable("model", "ModelDeployment", f'{info}{{namespace=~"$namespace"}}', "model_name"))
        .with_variable(label_variable("version", "Model version",
                                      f'{info}{{namespace=~"$namespace", model_name=~"$model"}}', "model_version"))
        .with_row(dash.Row("Traffic"))
        .with_panel(series(
            "Requests per second",
            "Inference requests answered per second (infer and predict endpoints, every status code).",
            "reqps", query(f"sum by ({BY}) (rate({requests}[{RATE}]))", MODEL_LEGEND)))
        .with_panel(series(
            "Error rate",
            "Share of inference requests answered with 5xx (server errors) and 4xx (rejected inputs).",
            "percentunit",
            query(f'sum by ({BY}) (rate(modelops_inference_requests_total{{{INFER}, {SEL}, status_code=~"5.."}}'
                  f"[{RATE}])) / sum by ({BY}) (rate({requests}[{RATE}]))", f"5xx {MODEL_LEGEND}"),
            query(f'sum by ({BY}) (rate(modelops_inference_requests_total{{{INFER}, {SEL}, status_code=~"4.."}}'
                  f"[{RATE}])) / sum by ({BY}) (rate({requests}[{RATE}]))", f"4xx {MODEL_LEGEND}", "B")))
        .with_row(dash.Row("Latency"))
        .with_panel(series(
            "Request latency p50 / p95 / p99",
            "Time from request received to response sent, from the server's histogram (bucket-interpolated).",
            "s",
            query(quantile(0.5), f"p50 {MODEL_LEGEND}"),
            query(quantile(0.95), f"p95 {MODEL_LEGEND}", "B"),
            query(quantile(0.99), f"p99 {MODEL_LEGEND}", "C")))
        .with_panel(series(
            "Model run time p95",
            "Time of one onnxruntime session.run (one batch): request latency minus queueing and HTTP.",
            "s",
            query(f"histogram_quantile(0.95, sum by (le, {BY}) (rate("
                  f"modelops_inference_model_run_duration_seconds_bucket{{{SEL}}}[{RATE}])))", MODEL_LEGEND)))
        .with_row(dash.Row("Batching and concurrency"))
        .with_panel(series(
            "Batch size",
            "Rows per model run after dynamic batching (mean), and requests merged into one run (mean).",
            "short",
            query(f"sum by ({BY}) (rate(modelops_inference_batch_rows_sum{{{SEL}}}[{RATE}])) / "
                  f"sum by ({BY}) (rate(modelops_inference_batch_rows_count{{{SEL}}}[{RATE}]))",
                  f"rows {MODEL_LEGEND}"),
            query(f"sum by ({BY}) (rate(modelops_inference_batch_requests_sum{{{SEL}}}[{RATE}])) / "
                  f"sum by ({BY}) (rate(modelops_inference_batch_requests_count{{{SEL}}}[{RATE}]))",
                  f"requests {MODEL_LEGEND}", "B"), width=8))
        .with_panel(series(
            "In-flight requests",
            "Inference requests being processed now, summed over the pods.",
            "short", query(f"sum by ({BY}) (modelops_inference_requests_in_flight{{{SEL}}})", MODEL_LEGEND),
            width=8))
        .with_panel(series(
            "Replicas vs HPA",
            "Pods serving a loaded model (model_ready), against the HPA's desired and maximum replicas "
            "(kube-state-metrics; empty without an HPA).",
            "short",
            query(f'sum by (namespace, model_name) ({ready}) ', "ready {{namespace}}/{{model_name}}"),
            query(f"sum by (namespace, horizontalpodautoscaler) "
                  f"(kube_horizontalpodautoscaler_status_desired_replicas{{{hpa_sel}}})",
                  "HPA desired {{namespace}}/{{horizontalpodautoscaler}}", "B"),
            query(f"sum by (namespace, horizontalpodautoscaler) "
                  f"(kube_horizontalpodautoscaler_spec_max_replicas{{{hpa_sel}}})",
                  "HPA max {{namespace}}/{{horizontalpodautoscaler}}", "C"), width=8))
        .with_row(dash.Row("Versions"))
        .with_panel(series(
            "Model version over time",
            "Pods serving each model version: a rollout shows the new version rising as the old one falls; "
            "a rollback shows the reverse.",
            "short", query(f"count by ({BY}) ({ready} == 1)", MODEL_LEGEND), stack=True))
        .with_panel(
            table.Panel().title("Served models").datasource(DATASOURCE).span(12).height(8)
            .description("What each pod serves: model version, ONNX file sha256, platform.")
            .with_target(query(f"max by ({BY}, sha256, platform) (modelops_inference_model_info{{{SEL}}})",
                               instant=True, table_format=True)))
        .with_row(dash.Row("Canary"))
        .with_panel(series(
            "Canary weight (current step)",
            "Percent of the Gateway's traffic each ModelDeployment's canary takes now (0: none running), "
            "from the operator: the step the comparisons beside it are judged at.",
            "percent",
            query(f"max by (namespace, model_name) ({weight}) and on (namespace, model_name) "
                  f"group by (namespace, model_name) (modelops_inference_model_info{{{TRACK_SEL}}})",
                  "{{namespace}}/{{model_name}}")))
        .with_panel(series(
            "Canary vs stable: requests per second",
            "Inference requests per second the canary and the stable pods answer: their ratio should follow "
            "the canary weight.",
            "reqps", query(stable_track(per_track(track_requests)), TRACK_LEGEND)))
        .with_panel(series(
            "Canary vs stable: 5xx error rate",
            "Share of each track's inference requests answered with 5xx, which the operator's live analysis "
            "compares at every step (maxErrorRateIncrease).",
            "percentunit",
            query(stable_track(
                per_track(f'modelops_inference_requests_total{{{INFER}, {TRACK_SEL}, status_code=~"5.."}}')
                + f" / {per_track(track_requests)}"), TRACK_LEGEND)))
        .with_panel(series(
            "Canary vs stable: p99 latency",
            "99th percentile of each track's request latency, which the live analysis compares at every step "
            "(maxLatencyRatio).",
            "s",
            query(stable_track(f"histogram_quantile(0.99, sum by (le, {TRACK_BY}) (rate("
                               f"modelops_inference_request_duration_seconds_bucket{{{INFER}, {TRACK_SEL}}}"
                               f"[{RATE}])))"), TRACK_LEGEND)))
        .with_panel(series(
            "Canary vs stable: predicted classes",
            "Share of each track's answered rows per predicted (top-1) class: a canary that shifts it answers "
            "differently, which the live analysis tests (maxClassShift).",
            "percentunit",
            query(stable_track(f"sum by ({TRACK_BY}, class) (rate({predictions}[{RATE}])) / on ({TRACK_BY}) "
                               f"group_left sum by ({TRACK_BY}) (rate({predictions}[{RATE}]))"),
                  f"{TRACK_LEGEND}: class {{{{class}}}}")))
        .with_panel(series(
            "Canary vs stable: top-1 score p10 / p50 / p90",
            "Quantiles of each track's top-1 score (the winning class's probability): a canary less or more "
            "sure of its answers moves them, which the live analysis tests (maxScoreKS).",
            "short",
            query(score_quantile(0.1), f"p10 {TRACK_LEGEND}"),
            query(score_quantile(0.5), f"p50 {TRACK_LEGEND}", "B"),
            query(score_quantile(0.9), f"p90 {TRACK_LEGEND}", "C")))
        .with_row(dash.Row("Drift"))
        .with_panel(series(
            "PSI per feature",
            "Population stability index of each input feature's served values over the chart's drift window "
            "(monitoring.drift.window) against the training split's reference bins (recording rule "
            "modelops:feature_psi): under 0.1 stable, 0.1 to 0.25 a moderate shift (warning), above 0.25 a "
            "large one (critical).",
            "short",
            query(f"max by ({BY}, feature) (modelops:feature_psi{{{SEL}}})", f"{MODEL_LEGEND}: {{{{feature}}}}"))
            .thresholds(psi_thresholds()).thresholds_style(dashed_thresholds()))
        .with_panel(
            bargauge.Panel().title("Top drifting features").datasource(DATASOURCE).span(12).height(8)
            .description("The ten features with the largest PSI now, over every selected model version.")
            .unit("short").min(0).thresholds(psi_thresholds())
            .display_mode(common.BarGaugeDisplayMode.GRADIENT).orientation(common.VizOrientation.HORIZONTAL)
            .with_target(query(f"topk(10, max by ({BY}, feature) (modelops:feature_psi{{{SEL}}}))",
                               f"{MODEL_LEGEND}: {{{{feature}}}}", instant=True)))
        .with_panel(series(
            "Prediction PSI",
            "Population stability index of the served top-1 classes over the drift window against the model's "
            "own predictions on its training split (recording rule modelops:prediction_psi).",
            "short", query(f"max by ({BY}) (modelops:prediction_psi{{{SEL}}})", MODEL_LEGEND))
            .thresholds(psi_thresholds()).thresholds_style(dashed_thresholds()))
        .with_panel(series(
            "Predicted classes vs reference",
            "Share of answered rows per predicted (top-1) class, served against the reference profile's share "
            "of the same class: a gap between a class's two lines is what the prediction PSI measures.",
            "percentunit",
            query(f"sum by ({BY}, class) (rate({served}[{RATE}])) / on ({BY}) group_left "
                  f"sum by ({BY}) (rate({served}[{RATE}]))", f"served {MODEL_LEGEND}: class {{{{class}}}}"),
            query(f"max by ({BY}, class) (modelops_inference_prediction_reference_ratio{{{SEL}}})",
                  f"reference {MODEL_LEGEND}: class {{{{class}}}}", "B")))
    )
    return builder.build()


def operator_dashboard():
    op = 'job=~"$job"'
    phase = md_namespace(f"modelops_operator_modeldeployment_phase{{{op}}}")

    def by_result(metric: str) -> str:
        return f"sum by (result) (increase({metric}{{{op}}}[{RATE}]))"

    def p95(metric: str) -> str:
        return f"histogram_quantile(0.95, sum by (le) (rate({metric}_bucket{{{op}}}[{RATE}])))"

    builder = (
        dash.Dashboard("modelops / Operator").uid("modelops-operator")
        .description("The modelops operator: reconciles, exports, rollouts, rollbacks, ModelDeployment phases.")
        .tags(["modelops", "operator"]).refresh("30s").time("now-6h", "now").timezone("browser")
        .with_variable(datasource_variable())
        .with_variable(label_variable("job", "Operator job", "modelops_operator_reconciles_total", "job"))
        .with_row(dash.Row("Health"))
        .with_panel(
            stat.Panel().title("Operator replicas up").datasource(DATASOURCE).span(6).height(5)
            .description("Operator replicas answering their /metrics scrape (one acts; peers stand by).")
            .with_target(query(f"sum(up{{{op}}})", instant=True)))
        .with_panel(
            stat.Panel().title("ModelDeployments").datasource(DATASOURCE).span(6).height(5)
            .description("ModelDeployments the operator tracks, by phase.")
            .with_target(query(f"sum by (phase) (modelops_operator_modeldeployment_phase{{{op}}} == 1)",
                               "{{phase}}", instant=True)))
        .with_panel(series(
            "Webhook deliveries",
            "MLflow webhook deliveries per interval, accepted or rejected (bad signature, stale, malformed).",
            "short", query(by_result("modelops_operator_webhooks_total"), "{{result}}")))
        .with_row(dash.Row("Reconciles"))
        .with_panel(series(
            "Reconciles", "Reconciliations of ModelDeployments per interval, by result.", "short",
            query(by_result("modelops_operator_reconciles_total"), "{{result}}"), stack=True))
        .with_panel(series(
            "Reconcile duration p95", "95th percentile of one reconciliation's duration.", "s",
            query(p95("modelops_operator_reconcile_duration_seconds"), "p95")))
        .with_row(dash.Row("Exports and rollouts"))
        .with_panel(series(
            "Exports", "ONNX exports per interval, by result (a failure blocks the new version).", "short",
            query(by_result("modelops_operator_exports_total"), "{{result}}"), width=6, stack=True))
        .with_panel(series(
            "Export duration p95", "95th percentile of an ONNX export with its parity gate.", "s",
            query(p95("modelops_operator_export_duration_seconds"), "p95"), width=6))
        .with_panel(series(
            "Rollouts", "Rollouts per interval, by result.", "short",
            query(by_result("modelops_operator_rollouts_total"), "{{result}}"), width=6, stack=True))
        .with_panel(series(
            "Rollout duration p95", "95th percentile of the time from apply to Available.", "s",
            query(p95("modelops_operator_rollout_duration_seconds"), "p95"), width=6))
        .with_panel(series(
            "Smoke checks", "Smoke checks against new versions per interval, by result.", "short",
            query(by_result("modelops_operator_smoke_checks_total"), "{{result}}"), stack=True))
        .with_panel(series(
            "Rollbacks by reason", "Rollbacks to the last good version per interval, by reason.", "short",
            query(f"sum by (reason) (increase(modelops_operator_rollbacks_total{{{op}}}[{RATE}]))", "{{reason}}"),
            stack=True))
        .with_row(dash.Row("ModelDeployments"))
        .with_panel(series(
            "Phase of every ModelDeployment",
            "One line per ModelDeployment, labelled with its current phase (Pending, Exporting, RollingOut, "
            "Canary, Held, Verifying, Ready, RolledBack, Failed); a change of phase starts a new line.",
            "short",
            query(f"max by (namespace, name, phase) ({phase} == 1)", "{{namespace}}/{{name}}: {{phase}}"),
            width=12))
        .with_panel(
            table.Panel().title("ModelDeployments now").datasource(DATASOURCE).span(12).height(8)
            .description("The current phase of every ModelDeployment.")
            .with_target(query(f"max by (namespace, name, phase) ({phase} == 1)", instant=True, table_format=True)))
        .with_panel(series(
            "Canary weight of every ModelDeployment",
            "Percent of the Gateway's traffic each canary takes now, step by step (0: none running); a drop to 0 "
            "before the last step is an abort or a failed step.",
            "percent",
            query(f"max by (namespace, name) ({md_namespace(f'modelops_operator_canary_weight{{{op}}}')})",
                  "{{namespace}}/{{name}}"), width=12))
    )
    return builder.build()


DASHBOARDS = {"inference": inference_dashboard, "operator": operator_dashboard}


def render(build) -> str:
    data = json.loads(json.dumps(build(), cls=JSONEncoder))
    for number, panel in enumerate(data["panels"], start=1):  # Grafana wants unique panel ids
        panel["id"] = number
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed file differs")
    parser.add_argument("--out", type=Path, default=HERE, help="folder of the JSON files")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path, text = args.out / f"{name}.json", render(build)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("stale dashboards (run charts/modelops/dashboards/generate.py):", *stale, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
