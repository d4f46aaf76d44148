"""The canary's live analysis (live.py): scraped texts to windowed counts, the statistics against
scipy, and the verdicts a canary gets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from scipy import stats

from modelops_operator import live
from modelops_operator.analysis import Verdict

INF = math.inf
LATENCY_EDGES = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, INF)
SCORE_EDGES = (*(round(0.05 * i, 2) for i in range(1, 21)), INF)

# One pod's /metrics as prometheus_client writes it: HTTP and gRPC, infer and predict, health checks
# and metadata calls that must not count, 4xx and 5xx, a second model_version, _created gauges.
EXPOSITION = (Path(__file__).parent / "live_exposition.prom").read_text()

OLD_SERVER = ("# HELP modelops_inference_requests_total Requests answered.\n"
              "# TYPE modelops_inference_requests_total counter\n"
              'modelops_inference_requests_total{endpoint="infer",model_name="iris",model_version="2",'
              'protocol="http",status_code="200"} 10.0\n')


def cumulative(edges, per_bin):
    out, running = {}, 0.0
    for le in edges:
        running += per_bin.get(le, 0.0)
        out[le] = running
    return out


def side(n, errors=0, latency=None, classes=None, scores=None):
    """A side that served n inference requests of one row each, with the given shares per latency
    bin (by upper edge), per class and per score bin."""
    latency = latency or {0.025: 1.0}
    classes = classes or {"0": 0.9, "1": 0.1}
    scores = scores or {0.7: 0.2, 0.8: 0.3, 0.9: 0.3, 1.0: 0.2}
    return live.Snapshot(n, errors, cumulative(LATENCY_EDGES, {k: round(n * s) for k, s in latency.items()}),
                         {k: round(n * s) for k, s in classes.items()},
                         cumulative(SCORE_EDGES, {k: round(n * s) for k, s in scores.items()}))


def json_safe(evidence):
    return json.loads(json.dumps(evidence, allow_nan=False)) == evidence


def judge(canary, stable, looks=20, **thresholds) -> Verdict:
    v = live.judge(canary, stable, live.Thresholds(**thresholds), looks)
    assert json_safe(v.evidence)
    return v


# ---------------------------------------------------------------- parse, delta, total


def test_parse_sums_inference_requests_over_protocols_endpoints_and_versions_and_counts_5xx_as_errors():
    s = live.parse(EXPOSITION)
    assert s.requests == 120 + 4 + 2 + 30 + 1 + 40 + 3  # not model_metadata, not health_ready
    assert s.errors == 2 + 1 + 3  # 503, 500, 504; the 400 is the client's
    assert s.latency == {0.005: 140.0, 0.01: 163.0, INF: 169.0}  # http + grpc infer, no health checks
    assert s.classes == {"0": 160.0, "2": 60.0, "other": 5.0}
    assert s.scores == {0.5: 15.0, 0.9: 115.0, 1.0: 215.0, INF: 215.0}


def test_parse_of_an_older_server_marks_the_missing_metrics_as_not_exposed():
    s = live.parse(OLD_SERVER)
    assert (s.requests, s.errors) == (10.0, 0.0)
    assert s.latency is None and s.classes is None and s.scores is None


def test_parse_reads_prometheus_client_output_and_an_exposed_metric_without_series_is_empty():
    r = CollectorRegistry()
    requests = Counter("modelops_inference_requests", "r", ["model_name", "model_version", "protocol", "endpoint",
                                                            "status_code"], registry=r)
    duration = Histogram("modelops_inference_request_duration_seconds", "d",
                         ["model_name", "model_version", "protocol", "endpoint"], buckets=LATENCY_EDGES[:-1],
                         registry=r)
    Counter("modelops_inference_predictions", "p", ["model_name", "model_version", "class"], registry=r)
    Histogram("modelops_inference_prediction_score", "s", ["model_name", "model_version"],
              buckets=SCORE_EDGES[:-1], registry=r)
    requests.labels("iris", "3", "http", "infer", "200").inc(5)
    requests.labels("iris", "3", "grpc", "infer", "503").inc(2)
    for seconds in (0.003, 0.02, 0.02, 7.0):
        duration.labels("iris", "3", "http", "predict").observe(seconds)
    s = live.parse(generate_latest(r).decode())
    assert (s.requests, s.errors) == (7.0, 2.0)
    assert set(s.latency) == set(LATENCY_EDGES) and s.latency[0.005] == 1 and s.latency[0.025] == 3
    assert s.latency[INF] == 4
    assert s.classes == {} and s.scores == {}


def test_parse_refuses_text_that_is_not_the_exposition_format():
    with pytest.raises(ValueError, match="exposition format"):
        live.parse("<html><body>502 Bad Gateway</body></html>\n")


def test_delta_is_what_the_pod_served_between_two_scrapes():
    before = live.Snapshot(100, 2, {0.1: 50, INF: 100}, {"0": 80, "1": 20}, {1.0: 100, INF: 100})
    after = live.Snapshot(160, 5, {0.1: 90, INF: 160}, {"0": 120, "1": 30, "2": 10}, {1.0: 160, INF: 160})
    assert live.delta(before, after) == live.Snapshot(60, 3, {0.1: 40, INF: 60}, {"0": 40, "1": 10, "2": 10},
                                                      {1.0: 60, INF: 60})


def test_delta_after_a_restart_is_everything_the_new_process_counted():
    before = live.Snapshot(100, 2, {0.1: 50, INF: 100}, {"0": 80, "1": 20}, {1.0: 100, INF: 100})
    restarted = live.Snapshot(30, 0, {0.1: 20, INF: 30}, {"0": 25, "1": 5}, {1.0: 30, INF: 30})
    assert live.delta(before, restarted) == restarted
    only_classes_fell = live.Snapshot(130, 2, {0.1: 70, INF: 130}, {"0": 90}, {1.0: 130, INF: 130})
    assert live.delta(before, only_classes_fell) == only_classes_fell  # class "1" vanished: a new process


def test_delta_of_a_pod_new_to_the_window_is_its_whole_count():
    after = live.Snapshot(10, 1, None, {"0": 10}, None)
    assert live.delta(None, after) == after


def test_total_sums_pods_on_their_shared_bucket_edges_and_keeps_what_any_pod_exposes():
    a = live.Snapshot(10, 1, {0.1: 5, 0.5: 8, INF: 10}, {"0": 10}, None)
    b = live.Snapshot(20, 0, {0.1: 15, INF: 20}, None, {})
    c = live.Snapshot(5, 0, {}, {"1": 5}, None)
    assert live.total([a, b, c]) == live.Snapshot(35, 1, {0.1: 20, INF: 30}, {"0": 10, "1": 5}, {})
    assert live.total([]) == live.Snapshot()


# ---------------------------------------------------------------- quantile


@pytest.mark.parametrize("q, expected", [
    (0.5, 0.1 + 0.4 * (10 / 20)),  # rank 20 in (0.1, 0.5], 10 of its 20 rows
    (0.25, 0.1),  # rank 10: the top of the first bucket, which starts at 0
    (0.1, 0.1 * 4 / 10),
    (0.99, 0.5 + 0.5 * (9.6 / 10)),  # rank 39.6 in (0.5, 1.0]
    (0.0, 0.0),
])
def test_quantile_interpolates_inside_the_bucket_like_histogram_quantile(q, expected):
    assert live.quantile(q, {0.1: 10, 0.5: 30, 1.0: 40, INF: 40}) == pytest.approx(expected, abs=1e-12)


def test_quantile_in_the_inf_bucket_is_the_largest_finite_edge_and_edge_cases_follow_promql():
    assert live.quantile(0.9, {0.1: 10, 0.5: 12, INF: 20}) == 0.5
    assert math.isnan(live.quantile(0.5, {0.1: 0, INF: 0}))
    assert math.isnan(live.quantile(0.5, {0.1: 5, 0.5: 10}))  # no +Inf bucket
    assert live.quantile(1.5, {0.1: 5, INF: 5}) == INF and live.quantile(-1, {0.1: 5, INF: 5}) == -INF
    assert live.quantile(0.5, {0.1: 10, 0.5: 8, INF: 20}) == pytest.approx(0.1 + 0.4 * 0.0)  # evened to 10


# ---------------------------------------------------------------- statistics against scipy


@pytest.mark.parametrize("df", [1, 2, 3, 5, 10, 63, 100, 1000])
@pytest.mark.parametrize("x", [0.01, 0.5, 1.0, 3.841458820694124, 10.0, 50.0, 80.0, 200.0, 1000.0])
def test_chi2_sf_matches_scipy_absolutely_and_in_the_far_tail_relatively(x, df):
    expected = stats.chi2.sf(x, df)
    got = live.chi2_sf(x, df)
    assert got == pytest.approx(expected, abs=1e-6)
    if expected > 1e-290:
        assert got == pytest.approx(expected, rel=1e-8)


def test_chi2_sf_reference_values_and_bounds():
    assert live.chi2_sf(3.841458820694124, 1) == pytest.approx(0.05, abs=1e-12)
    assert live.chi2_sf(5.991464547107979, 2) == pytest.approx(0.05, abs=1e-12)
    assert live.chi2_sf(0.0, 4) == 1.0 and live.chi2_sf(INF, 4) == 0.0
    with pytest.raises(ValueError):
        live.chi2_sf(1.0, 0)


def test_chi2_homogeneity_matches_scipy_and_drops_classes_empty_in_both():
    a = {"0": 140, "1": 50, "2": 10, "7": 0}
    b = {"0": 1600, "1": 180, "2": 20, "9": 0}
    stat, df, p = live.chi2_homogeneity(a, b)
    ref = stats.chi2_contingency([[140, 50, 10], [1600, 180, 20]], correction=False)
    assert (stat, df, p) == (pytest.approx(ref.statistic, rel=1e-12), ref.dof, pytest.approx(ref.pvalue, rel=1e-9))
    assert live.chi2_homogeneity({"0": 5}, {"0": 9}) == (0.0, 0, 1.0)


def test_pool_sparse_merges_classes_too_rare_for_the_chi_squared_approximation():
    a, b, pooled = live.pool_sparse({"0": 90, "1": 8, "2": 1, "3": 1}, {"0": 900, "1": 80, "2": 12, "3": 8})
    assert pooled == 2  # classes 2 and 3 expect about 1 row on the canary side
    assert a == {"0": 90, "1": 8, "(pooled)": 2} and b == {"0": 900, "1": 80, "(pooled)": 20}


def test_total_variation_is_the_share_of_rows_whose_class_moved():
    assert live.total_variation({"0": 70, "1": 30}, {"0": 900, "1": 100}) == pytest.approx(0.2)
    assert live.total_variation({"0": 5}, {"1": 5}) == pytest.approx(1.0)


@pytest.mark.parametrize("lam", [0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.17, 1.18, 1.36, 1.63, 2.0, 3.0, 5.0])
def test_kolmogorov_sf_matches_scipy(lam):
    assert live.kolmogorov_sf(lam) == pytest.approx(stats.kstwobign.sf(lam), abs=1e-9)


def test_kolmogorov_sf_reference_values():
    assert live.kolmogorov_sf(1.0) == pytest.approx(0.2699996716735, abs=1e-9)
    assert live.kolmogorov_sf(1.3580986393225505) == pytest.approx(0.05, abs=1e-9)
    assert live.kolmogorov_sf(0.0) == 1.0 and live.kolmogorov_sf(1e-200) == 1.0


def edge_valued(rng, n, weights):
    """Samples that sit exactly on score edges, so binning loses nothing and D must equal scipy's."""
    return rng.choice(SCORE_EDGES[:-1], size=n, p=weights)


def binned(values):
    return {le: float(sum(v <= le for v in values)) for le in SCORE_EDGES}


@pytest.mark.parametrize("n1, n2", [(120, 300), (400, 400), (1000, 250)])
def test_ks_binned_statistic_equals_scipy_on_edge_valued_samples_and_p_uses_stephens(n1, n2):
    import numpy as np
    rng = np.random.default_rng(n1 + n2)
    w1 = np.linspace(1, 2, 20) / np.linspace(1, 2, 20).sum()
    w2 = np.linspace(2, 1, 20) / np.linspace(2, 1, 20).sum()
    x, y = edge_valued(rng, n1, w1), edge_valued(rng, n2, w2)
    d, p, at = live.ks_binned(binned(x), binned(y))
    ref = stats.ks_2samp(x, y, method="asymp")
    assert d == pytest.approx(ref.statistic, abs=1e-12)
    assert at == pytest.approx(ref.statistic_location)
    ne = n1 * n2 / (n1 + n2)
    assert p == pytest.approx(stats.kstwobign.sf((math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * d), abs=1e-9)
    assert p == pytest.approx(ref.pvalue, abs=0.02)  # Stephens vs scipy's kstwo(D, n): close at small n


@pytest.mark.parametrize("d", [0.005, 0.01, 0.015, 0.02])
def test_ks_p_is_within_1e_3_of_scipys_asymptotic_p_on_large_windows(d):
    cum_a = {0.5: 25_000.0, INF: 50_000.0}
    cum_b = {0.5: 25_000.0 + 50_000 * d, INF: 50_000.0}
    got_d, p, _ = live.ks_binned(cum_a, cum_b)
    assert got_d == pytest.approx(d)
    assert p == pytest.approx(stats.kstwo.sf(d, 25_000), abs=1e-3)


def test_ks_binned_without_rows_or_shared_edges_tests_nothing():
    assert live.ks_binned({}, {0.5: 1, INF: 2})[:2] == (0.0, 1.0)
    assert live.ks_binned({0.3: 1.0}, {0.5: 1.0})[:2] == (0.0, 1.0)


def test_two_proportion_z_is_the_pooled_one_sided_test():
    z, p = live.two_proportion_z(30, 1000, 18, 1000)
    pooled = 48 / 2000
    assert z == pytest.approx(0.012 / math.sqrt(pooled * (1 - pooled) * 2 / 1000), rel=1e-12)
    assert p == pytest.approx(stats.norm.sf(z), rel=1e-9)
    assert live.two_proportion_z(0, 100, 0, 100) == (0.0, 1.0)


# ---------------------------------------------------------------- judge


def test_identical_distributions_pass():
    v = judge(side(1000, 5), side(9000, 45))
    assert (v.outcome, v.reason) == ("Pass", "CanaryHealthy")
    assert v.evidence["failed"] == [] and v.evidence["undecided"] == [] and v.evidence["notes"] == []
    assert v.evidence["scores"]["ks"] == 0 and v.evidence["scores"]["atScore"] is None
    for key in ("errorRate", "latency", "predictions", "scores"):
        assert v.evidence[key]["status"] == "passed"
    assert "1000 and 9000 inference requests" in v.message


def test_five_percent_5xx_on_200_canary_requests_against_none_on_stable_fails():
    v = judge(side(200, 10), side(1800, 0))
    assert (v.outcome, v.reason) == ("Fail", "ErrorRateIncreased")
    e = v.evidence["errorRate"]
    assert (e["canaryErrors"], e["canaryRequests"], e["stableErrors"], e["increase"]) == (10, 200, 0, 0.05)
    assert e["p"] < 0.05 / 20
    assert "5.0 %" in v.message and "maxErrorRateIncrease 1 %" in v.message and "/ 20 looks" in v.message
    assert v.evidence["failed"] == ["ErrorRateIncreased"]


def test_a_fifth_of_rows_moving_class_in_a_90_10_mix_fails():
    v = judge(side(200, classes={"0": 0.7, "1": 0.3}), side(1800))
    assert (v.outcome, v.reason) == ("Fail", "PredictionsShifted")
    e = v.evidence["predictions"]
    assert e["totalVariation"] == pytest.approx(0.2) and e["largestMoveClass"] in ("0", "1")
    assert e["df"] == 1 and e["p"] < 1e-6
    assert "20.0 %" in v.message and "maxClassShift 5 %" in v.message


def test_a_one_point_shift_on_5000_rows_passes_though_it_is_significant():
    v = judge(side(5000, classes={"0": 0.89, "1": 0.11}), side(50000), looks=1)
    e = v.evidence["predictions"]
    assert e["p"] < 0.05 and e["totalVariation"] == pytest.approx(0.01)
    assert (v.outcome, v.reason) == ("Pass", "CanaryHealthy")


def test_p99_three_times_stables_and_50_ms_apart_fails():
    v = judge(side(200, latency={0.025: 0.98, 0.1: 0.02}), side(1800))
    assert (v.outcome, v.reason) == ("Fail", "LatencyIncreased")
    e = v.evidence["latency"]
    assert e["canaryP99Seconds"] == pytest.approx(0.075)  # rank 198 of 200: half way into (0.05, 0.1]
    assert e["stableP99Seconds"] == pytest.approx(0.01 + 0.015 * 0.99)
    assert e["ratio"] == pytest.approx(3.018, abs=1e-3)
    assert "75 ms" in v.message and "maxLatencyRatio 1.5" in v.message and "25 ms floor" in v.message


def test_a_p99_pushed_a_bucket_up_by_a_few_slow_requests_passes_without_significance():
    """benchmarks/canary.py on a busy machine: p99 20 ms vs 9 ms on 298 canary requests, 2 % of them
    (a new pod's first requests) in the 10-25 ms bucket, as 1 % of the stable's are."""
    t = live.Thresholds(latency_floor_s=0.005)  # the gap (about 10 ms) clears this floor: the test decides
    v = live.judge(side(300, latency={0.01: 0.98, 0.025: 0.02}), side(2700, latency={0.01: 0.99, 0.025: 0.01}),
                   t, looks=60)
    e = v.evidence["latency"]
    assert e["ratio"] > 1.5 and e["differenceSeconds"] > 0.005
    assert (e["canarySlower"], e["stableSlower"]) == (6, 27) and e["p"] > 0.05 / 60
    assert (v.outcome, v.reason) == ("Pass", "CanaryHealthy"), v.message
    assert "not significant" in v.message


def test_p99_twice_stables_under_a_millisecond_passes_by_the_floor():
    v = judge(side(200, latency={0.001: 1.0}), side(1800, latency={0.0005: 1.0}))
    assert (v.outcome, v.reason) == ("Pass", "CanaryHealthy")
    assert v.evidence["latency"]["ratio"] == pytest.approx(0.000995 / 0.000495, rel=1e-3)
    assert "under the 25 ms floor" in v.message


def test_a_canary_with_too_few_requests_is_inconclusive_before_any_check():
    v = judge(side(40, 40), side(1800))
    assert (v.outcome, v.reason) == ("Inconclusive", "TooFewSamples")
    assert v.evidence["undecided"] == ["requests"] and "40 inference requests" in v.message
    assert "minSamples 100" in v.message


def test_a_distribution_test_without_enough_rows_is_inconclusive():
    canary = side(200)
    few = live.Snapshot(canary.requests, 0, canary.latency, {"0": 45, "1": 5}, canary.scores)
    v = judge(few, side(1800))
    assert (v.outcome, v.reason) == ("Inconclusive", "TooFewSamples")
    assert v.evidence["undecided"] == ["predictions"] and "canary 50" in v.message
    assert v.evidence["predictions"]["status"] == "tooFewSamples"


def test_a_stable_side_with_too_few_requests_leaves_every_check_undecided():
    v = judge(side(200), side(50))
    assert (v.outcome, v.reason) == ("Inconclusive", "TooFewSamples")
    assert v.evidence["undecided"] == ["errorRate", "latency", "predictions", "scores"]
    assert "stable 50, fewer than minSamples 100" in v.message


def test_a_canary_failing_less_often_than_stable_passes():
    v = judge(side(1000, 0), side(1000, 40), looks=1)
    assert (v.outcome, v.evidence["errorRate"]["increase"]) == ("Pass", -0.04)
    assert v.evidence["errorRate"]["p"] > 0.99


def test_a_failure_is_reported_even_when_another_check_lacks_rows():
    canary = side(200, 10)
    v = judge(live.Snapshot(200, 10, canary.latency, {"0": 50}, canary.scores), side(1800))
    assert (v.outcome, v.reason) == ("Fail", "ErrorRateIncreased")


def test_metrics_an_older_stable_server_lacks_are_skipped_with_a_note():
    stable = side(1800)
    v = judge(side(200), live.Snapshot(stable.requests, 0, stable.latency, None, None))
    assert (v.outcome, v.reason) == ("Pass", "CanaryHealthy")
    assert v.evidence["predictions"] == {"status": "notExposed", "missing": ["stable"]}
    assert v.evidence["scores"]["status"] == "notExposed" and len(v.evidence["notes"]) == 2
    assert "modelops_inference_predictions_total" in v.message


def test_scores_shifted_fails_on_the_ks_distance():
    v = judge(side(400, scores={0.5: 0.3, 0.6: 0.3, 0.9: 0.2, 1.0: 0.2}), side(3600))
    assert (v.outcome, v.reason) == ("Fail", "ScoresShifted")
    e = v.evidence["scores"]
    assert e["ks"] == pytest.approx(0.6) and (e["atScore"], e["canaryBelow"], e["stableBelow"]) == (0.6, 0.6, 0.0)
    assert "maxScoreKS 0.1" in v.message and "60.0 % of canary rows score <= 0.6" in v.message


def test_bonferroni_a_p_just_under_alpha_fails_at_one_look_but_not_at_twenty():
    canary, stable = side(1000, 30), side(1000, 18)
    once = judge(canary, stable, looks=1)
    p = once.evidence["errorRate"]["p"]
    assert 0.05 / 20 < p < 0.05
    assert (once.outcome, once.reason) == ("Fail", "ErrorRateIncreased")
    twenty = judge(canary, stable, looks=20)
    assert (twenty.outcome, twenty.reason) == ("Pass", "CanaryHealthy")
    assert "not significant" in twenty.message and twenty.evidence["alphaPerLook"] == 0.0025


def test_evidence_names_thresholds_and_looks():
    v = judge(side(1000), side(1000), looks=7)
    assert v.evidence["looks"] == 7 and v.evidence["thresholds"] == {
        "minSamples": 100, "maxErrorRateIncrease": 0.01, "maxLatencyRatio": 1.5, "latencyFloorSeconds": 0.025,
        "maxClassShift": 0.05, "maxScoreKS": 0.1, "alpha": 0.05}


@pytest.mark.parametrize("bad", [{"min_samples": 0}, {"alpha": 1.0}, {"max_latency_ratio": 0.5},
                                 {"max_class_shift": 2}, {"latency_floor_s": -1}])
def test_thresholds_refuse_values_that_cannot_judge(bad):
    with pytest.raises(ValueError, match="thresholds."):
        live.Thresholds(**bad)


def test_looks_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="looks"):
        live.judge(side(200), side(200), live.Thresholds(), 0)


# ---------------------------------------------------------------- step decision


@pytest.mark.parametrize("outcome, elapsed, expected", [
    ("Fail", 5, "fail"), ("Fail", 0, "fail"), ("Fail", 900, "fail"),
    ("Pass", 5, "wait"), ("Pass", 299.9, "wait"), ("Pass", 300, "pass"), ("Pass", 700, "pass"),
    ("Inconclusive", 5, "wait"), ("Inconclusive", 300, "wait"), ("Inconclusive", 599, "wait"),
    ("Inconclusive", 600, "inconclusive"),
])
def test_step_decision(outcome, elapsed, expected):
    assert live.step_decision(outcome, elapsed, 300, 600) == expected


def test_step_decision_refuses_unknown_outcomes_and_windows_longer_than_the_step():
    with pytest.raises(ValueError, match="outcome"):
        live.step_decision("Maybe", 1, 300, 600)
    with pytest.raises(ValueError, match="window_s"):
        live.step_decision("Pass", 1, 900, 600)
