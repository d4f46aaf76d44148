import math

import numpy as np
import pytest

from benchmarks.serving.stats import percentile, ratio, summarise


@pytest.mark.parametrize("q", [0, 1, 50, 90, 99, 99.9, 100])
def test_percentile_interpolates_between_ranks_like_numpy(q):
    values = list(np.random.default_rng(1).exponential(size=1001))
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_of_nothing_is_nan_and_of_one_value_is_that_value():
    assert math.isnan(percentile([], 50))
    assert percentile([0.25], 99) == 0.25


def test_percentile_outside_0_to_100_is_refused():
    with pytest.raises(ValueError, match="0..100"):
        percentile([1.0], 101)


def test_ratio_is_none_when_a_side_is_missing_or_the_denominator_is_not_positive():
    assert ratio(6, 3) == 2
    assert ratio(None, 3) is None
    assert ratio(6, None) is None
    assert ratio(6, 0) is None


def test_summarise_counts_admitted_requests_and_divides_cpu_by_them():
    s = summarise([0.001] * 99 + [0.1], seconds=2.0, rows_per_request=4, rejected=7, errors=1,
                  server_cpu_s=0.05, client_cpu_s=0.5)
    assert s["requests"] == 100 and s["rejected"] == 7 and s["errors"] == 1
    assert s["req_per_s"] == 50 and s["rows_per_s"] == 200
    assert s["p50_ms"] == 1.0
    assert s["server_cpu_us_per_req"] == 500 and s["server_cpu_util"] == 0.03
    assert s["client_cpu_util"] == 0.25


def test_summarise_without_answers_has_no_latency_or_cpu_per_request():
    s = summarise([], seconds=1.0, rows_per_request=1, rejected=3, server_cpu_s=0.2)
    assert s["req_per_s"] == 0 and s["p99_ms"] is None and s["server_cpu_us_per_req"] is None
