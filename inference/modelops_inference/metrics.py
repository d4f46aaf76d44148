"""Prometheus metrics, named by Prometheus conventions: one `modelops_inference_` prefix, base units,
`_total` counters, an `_info` metric for metadata, `model_name`/`model_version` labels, and every
series the dashboards chart initialised to 0 so rates exist before the first request.

HTTP and gRPC requests are the same series told apart by a `protocol` label (two values). Both use the
same endpoint names (`infer`, `model_metadata`, `health_ready`, ...) and an HTTP `status_code` (gRPC
answers are counted by the HTTP status of the same outcome), so every dashboard panel and alert that
sums over endpoints covers both protocols without a change.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from modelops_inference.admission import Admission
from modelops_inference.drift import Drift
from modelops_inference.errors import STATUS_CODES
from modelops_inference.predictions import MAX_CLASSES, Predictions

PREFIX = "modelops_inference_"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ROWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# Endpoints whose request series are created at start-up, per protocol, with these status codes.
INFERENCE_ENDPOINTS = {"http": ("infer", "predict"), "grpc": ("infer",)}
INITIAL_STATUS_CODES = (200, *sorted(set(STATUS_CODES.values())))

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """Every metric of one server, in its own registry (so tests can build many apps)."""

    def __init__(self, model_name: str, model_version: str, registry: CollectorRegistry | None = None,
                 protocols: tuple[str, ...] = ("http",)):
        self.registry = registry or CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._model = (model_name, model_version)
        model = ["model_name", "model_version"]
        r = self.registry
        self.requests = _RequestStats(self._model, protocols)
        r.register(self.requests)
        self.run_duration = Histogram(
            PREFIX + "model_run_duration_seconds", "Time of one onnxruntime session.run (one batch).",
            model, buckets=LATENCY_BUCKETS, registry=r)
        self.batch_rows = Histogram(PREFIX + "batch_rows", "Rows per model run (after dynamic batching).",
                                    model, buckets=ROWS_BUCKETS, registry=r)
        self.batch_requests = Histogram(PREFIX + "batch_requests", "Requests merged into one model run.",
                                        model, buckets=ROWS_BUCKETS, registry=r)
        self.model_ready = Gauge(PREFIX + "model_ready", "1 when the model is loaded, verified, warm.",
                                 model, registry=r)
        self.model_load_duration = Gauge(PREFIX + "model_load_duration_seconds",
                                         "Time to fetch, verify, open and warm up the model.", model,
                                         registry=r)
        self.model_info = Gauge(PREFIX + "model_info", "The served model: always 1, facts in labels.",
                                [*model, "sha256", "platform"], registry=r)
        self.run_duration.labels(*self._model)
        self.batch_rows.labels(*self._model)
        self.batch_requests.labels(*self._model)
        self.model_ready.labels(*self._model).set(0)
        self.model_load_duration.labels(*self._model).set(0)
        self._run = self.run_duration.labels(*self._model)
        self._rows = self.batch_rows.labels(*self._model)
        self._batch_requests = self.batch_requests.labels(*self._model)

    def observe_request(self, endpoint: str, status: int, seconds: float, protocol: str = "http") -> None:
        self.requests.observe(protocol, endpoint, status, seconds)

    def observe_run(self, rows: int, requests: int, seconds: float) -> None:
        self._run.observe(seconds)
        self._rows.observe(rows)
        self._batch_requests.observe(requests)

    def model_loaded(self, sha256: str, platform: str, load_seconds: float) -> None:
        self.model_info.labels(*self._model, sha256, platform).set(1)
        self.model_ready.labels(*self._model).set(1)
        self.model_load_duration.labels(*self._model).set(load_seconds)

    def model_unready(self) -> None:
        self.model_ready.labels(*self._model).set(0)

    def track_admission(self, admission: Admission) -> None:
        """Exposes `admission`'s counts, read at scrape time: nothing is added to a request's path."""
        self.registry.register(_AdmissionCollector(admission, self._model))

    def track_sample(self, rows: Callable[[], int]) -> None:
        """Exposes how many rows the input sample holds (never what they hold), read at scrape time."""
        self.registry.register(_SampleCollector(rows, self._model))

    def track_predictions(self, predictions: Callable[[], Predictions | None]) -> None:
        """Exposes the class counts and top-1 score histogram `predictions()` holds (nothing while it is None:
        loading, or a first output that is not counted), read at scrape time from its numpy arrays."""
        self.registry.register(_PredictionCollector(predictions, self._model))

    def track_drift(self, drift: Callable[[], Drift | None]) -> None:
        """Exposes the served rows per reference bin of each input feature and the reference's own shares
        (nothing while `drift()` is None: loading, no reference, or one that does not fit the model)."""
        self.registry.register(_DriftCollector(drift, self._model))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _RequestStats:
    """Requests answered, by protocol, endpoint and status, and their durations: plain counts in dicts, not
    prometheus_client's Counter and Histogram, which take a lock per value (2 of a one-row request's ~50 us
    of server CPU). Every front end observes from the event loop, so nothing races on a write; `collect`
    reads copies, so a scrape from another thread (tests) cannot see a dict change size under it."""

    def __init__(self, model: tuple[str, str], protocols: tuple[str, ...]):
        self._model = list(model)
        self._counts: dict[tuple[str, str, int], int] = {}
        # (protocol, endpoint): a count per LATENCY_BUCKETS bound (not cumulative), one past the last, the sum
        self._durations: dict[tuple[str, str], list] = {}
        for protocol in protocols:  # the series dashboards chart exist (at 0) before the first request
            for endpoint in INFERENCE_ENDPOINTS[protocol]:
                self._durations[(protocol, endpoint)] = self._empty()
                for code in INITIAL_STATUS_CODES:
                    self._counts[(protocol, endpoint, code)] = 0

    @staticmethod
    def _empty() -> list:
        return [0] * (len(LATENCY_BUCKETS) + 1) + [0.0]

    def observe(self, protocol: str, endpoint: str, status: int, seconds: float) -> None:
        key = (protocol, endpoint, status)
        self._counts[key] = self._counts.get(key, 0) + 1
        durations = self._durations.get((protocol, endpoint))
        if durations is None:
            durations = self._durations[(protocol, endpoint)] = self._empty()
        durations[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1  # the first bound >= seconds: "le"
        durations[-1] += seconds

    def describe(self):
        return list(self.collect())

    def collect(self):
        labels = ["model_name", "model_version", "protocol", "endpoint"]
        requests = CounterMetricFamily(
            PREFIX + "requests", "Requests answered, by protocol (http, grpc), endpoint and HTTP status code "
            "(gRPC answers by the HTTP status of the same outcome).", labels=[*labels, "status_code"])
        for (protocol, endpoint, status), count in list(self._counts.items()):
            requests.add_metric([*self._model, protocol, endpoint, str(status)], count)
        duration = HistogramMetricFamily(PREFIX + "request_duration_seconds",
                                         "Time from request received to response sent.", labels=labels)
        for (protocol, endpoint), values in list(self._durations.items()):
            *counts, total = list(values)
            cumulative = list(itertools.accumulate(counts))
            buckets = [(str(bound), n) for bound, n in zip(LATENCY_BUCKETS, cumulative, strict=False)]
            duration.add_metric([*self._model, protocol, endpoint], [*buckets, ("+Inf", cumulative[-1])], total)
        return [requests, duration]


class _AdmissionCollector:
    """The admission controller's rejections and current depth, whichever front end they came through."""

    def __init__(self, admission: Admission, model: tuple[str, str]):
        self._admission = admission
        self._model = list(model)

    def describe(self):
        return list(self.collect())

    def collect(self):
        labels = ["model_name", "model_version"]
        rejected = CounterMetricFamily(
            PREFIX + "requests_rejected", "Inference requests refused at admission because --max-queue-depth "
            "requests were already in the server (answered 503 with Retry-After).", labels=labels)
        rejected.add_metric(self._model, self._admission.rejected)
        depth = GaugeMetricFamily(PREFIX + "queue_depth", "Inference requests admitted and not yet answered.",
                                  labels=labels)
        depth.add_metric(self._model, self._admission.in_flight)
        # The same count under the name dashboards chart: read here, so a request pays for one counter, not two.
        in_flight = GaugeMetricFamily(PREFIX + "requests_in_flight", "Inference requests being processed now.",
                                      labels=labels)
        in_flight.add_metric(self._model, self._admission.in_flight)
        limit = GaugeMetricFamily(PREFIX + "queue_depth_limit", "--max-queue-depth (0: no limit).",
                                  labels=labels)
        limit.add_metric(self._model, self._admission.limit)
        return [rejected, depth, in_flight, limit]


class _SampleCollector:
    """Rows the input sample holds now (0 when it is off)."""

    def __init__(self, rows: Callable[[], int], model: tuple[str, str]):
        self._rows = rows
        self._model = list(model)

    def describe(self):
        return list(self.collect())

    def collect(self):
        held = GaugeMetricFamily(PREFIX + "sample_rows", "Input rows the replay sample holds in memory "
                                 "(--sample-rows, --sample-bytes bound it; 0 when it is off).",
                                 labels=["model_name", "model_version"])
        held.add_metric(self._model, self._rows())
        return [held]


class _PredictionCollector:
    """Rows answered by predicted class and their top-1 scores: what a canary's pods are compared on."""

    def __init__(self, predictions: Callable[[], Predictions | None], model: tuple[str, str]):
        self._predictions = predictions
        self._model = list(model)

    def describe(self):
        return list(self.collect())

    def collect(self):
        predictions = self._predictions()
        if predictions is None:
            return []
        labels = ["model_name", "model_version"]
        classes = CounterMetricFamily(
            PREFIX + "predictions", "Rows answered successfully, by the top-1 class of the model's first output "
            f"(argmax; a single column: 1 when >= 0.5, else 0; classes past {MAX_CLASSES - 1}: other).",
            labels=[*labels, "class"])
        for label, count in zip(predictions.class_labels(), predictions.class_counts(), strict=True):
            classes.add_metric([*self._model, label], count)
        score = HistogramMetricFamily(
            PREFIX + "prediction_score", "Top-1 score of each row answered successfully (the largest probability; "
            "a single column p: max(p, 1 - p)).", labels=labels)
        score.add_metric(self._model, predictions.score_buckets(), predictions.total_score())
        return [classes, score]


class _DriftCollector:
    """Served rows per reference bin of each feature, beside the reference's shares, from which the chart's
    recording rules compute PSI per feature (and per predicted class, with predictions_total)."""

    def __init__(self, drift: Callable[[], Drift | None], model: tuple[str, str]):
        self._drift = drift
        self._model = list(model)

    def describe(self):
        return list(self.collect())

    def collect(self):
        drift = self._drift()
        if drift is None:
            return []
        labels = ["model_name", "model_version"]
        bins = CounterMetricFamily(
            PREFIX + "feature_bin", "Rows answered successfully by the reference bin (training deciles) their value "
            "of the model's first input's feature fell in; non-finite values are not counted.",
            labels=[*labels, "feature", "bin"])
        ratios = GaugeMetricFamily(
            PREFIX + "feature_reference_ratio", "Share of the reference (training) values of the feature in the bin.",
            labels=[*labels, "feature", "bin"])
        for (feature, b), count, share in zip(drift.series, drift.bin_counts(), drift.reference_ratios, strict=True):
            bins.add_metric([*self._model, feature, b], count)
            ratios.add_metric([*self._model, feature, b], share)
        classes = GaugeMetricFamily(
            PREFIX + "prediction_reference_ratio", "Share of the reference (training) rows the model predicted as "
            "the class (labels as modelops_inference_predictions_total's).", labels=[*labels, "class"])
        reference = drift.reference
        for label, share in zip(reference.classes, reference.class_ratios, strict=True):
            classes.add_metric([*self._model, label], share)
        return [bins, ratios, classes]
