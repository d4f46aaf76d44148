"""The request counts and durations kept without prometheus_client's locked values (`_RequestStats`), checked
against prometheus_client's own Counter and Histogram fed the same requests."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from modelops_inference.metrics import LATENCY_BUCKETS, Metrics

REQUESTS = [("http", "infer", 200, 0.0004), ("http", "infer", 200, 0.001), ("http", "infer", 400, 0.0025),
            ("grpc", "infer", 200, 0.0031), ("http", "health_ready", 200, 12.0), ("grpc", "infer", 503, 1e-7),
            ("http", "infer", 200, 0.05)]


def samples(registry: CollectorRegistry, names: tuple[str, ...]) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect() for s in family.samples if s.name.startswith(names)}


def test_request_counts_and_duration_buckets_are_what_prometheus_client_would_expose():
    metrics = Metrics("mlp", "3", protocols=("http", "grpc"))
    reference = CollectorRegistry()
    labels = ["model_name", "model_version", "protocol", "endpoint"]
    counter = Counter("modelops_inference_requests", "", [*labels, "status_code"], registry=reference)
    histogram = Histogram("modelops_inference_request_duration_seconds", "", labels, buckets=LATENCY_BUCKETS,
                          registry=reference)
    for protocol, endpoint, status, seconds in REQUESTS:
        metrics.observe_request(endpoint, status, seconds, protocol=protocol)
        counter.labels("mlp", "3", protocol, endpoint, str(status)).inc()
        histogram.labels("mlp", "3", protocol, endpoint).observe(seconds)
    names = ("modelops_inference_requests_total", "modelops_inference_request_duration_seconds_")
    ours = samples(metrics.registry, names)
    theirs = samples(reference, names)
    assert {k: v for k, v in ours.items() if v} == {k: v for k, v in theirs.items() if v and "_created" not in k[0]}
    # the inference series exist at 0 before any request, per protocol (dashboards rate() them at once)
    zero = ("modelops_inference_requests_total", tuple(sorted({
        "model_name": "mlp", "model_version": "3", "protocol": "http", "endpoint": "predict",
        "status_code": "503"}.items())))
    assert ours[zero] == 0
