"""Live canary analysis: while a canary takes a share of real traffic, is it serving like stable?

The operator scrapes every canary and every stable pod's /metrics each few seconds; this module turns
those texts into counts over the analysis window and judges canary against stable. It is pure
decision code (texts and counts in, an `analysis.Verdict` out, no I/O) and, like analysis.py, uses
no numpy or scipy, which the operator image does not carry: the few special functions (the
chi-squared and Kolmogorov tails) are written out below and tested against scipy.

Four checks, each an effect that must exceed a threshold before anything fails: the 5xx rate of
inference requests, the p99 latency, the predicted-class mix and the top-1 score distribution. The
three that admit a test must also be significant, corrected for every look the canary will take.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from .analysis import FAIL, INCONCLUSIVE, PASS, Verdict, _num, _pct, _pct_g, _sig

REQUESTS = "modelops_inference_requests"  # counter: family names drop `_total`, samples keep it
LATENCY = "modelops_inference_request_duration_seconds"  # histogram
PREDICTIONS = "modelops_inference_predictions"  # counter of rows by predicted class
SCORES = "modelops_inference_prediction_score"  # histogram of each row's top-1 score
INFERENCE_ENDPOINTS = frozenset({"infer", "predict"})  # health and metadata calls say nothing of the model
STEP_DECISIONS = ("fail", "pass", "wait", "inconclusive")
MIN_EXPECTED = 5.0  # Cochran: chi-squared cells expected below this are pooled
_EPS = 1e-15
_TINY = 1e-300
_MAX_TERMS = 10_000


# ---------------------------------------------------------------- counts


@dataclass(frozen=True)
class Snapshot:
    """What one pod (or, summed, one side) has served: cumulative counters as scraped, or their
    increase over a window after `delta`. A histogram or class map is None when the server does not
    expose that metric at all (an older modelops-serve), so a check can say it was skipped rather
    than judge zeros; an exposed metric with nothing observed yet is an empty dict."""

    requests: float = 0.0  # inference requests (endpoint infer or predict, any protocol, any status)
    errors: float = 0.0  # of those, answered 5xx
    latency: dict[float, float] | None = None  # cumulative {le: requests}, le = +Inf included
    classes: dict[str, float] | None = None  # {predicted class: rows}
    scores: dict[float, float] | None = None  # cumulative {le: rows} of the top-1 score


class _Tally:
    """Accumulates one exposition's samples; a map is created when its family is seen at all."""

    def __init__(self) -> None:
        self.requests = self.errors = 0.0
        self.latency: dict[float, float] | None = None
        self.classes: dict[str, float] | None = None
        self.scores: dict[float, float] | None = None

    def saw(self, family: str) -> None:
        base = family.removesuffix("_total").removesuffix("_bucket")  # untyped families keep suffixes
        if base == LATENCY and self.latency is None:
            self.latency = {}
        elif base == PREDICTIONS and self.classes is None:
            self.classes = {}
        elif base == SCORES and self.scores is None:
            self.scores = {}

    def add(self, name: str, labels: dict[str, str], value: float) -> None:
        inference = labels.get("endpoint") in INFERENCE_ENDPOINTS
        if name == REQUESTS + "_total" and inference:
            self.requests += value
            if _is_5xx(labels.get("status_code", "")):
                self.errors += value
        elif name == LATENCY + "_bucket" and inference:
            self.saw(LATENCY)
            _bump(self.latency, float(labels["le"]), value)
        elif name == PREDICTIONS + "_total" and "class" in labels:
            self.saw(PREDICTIONS)
            _bump(self.classes, labels["class"], value)
        elif name == SCORES + "_bucket":
            self.saw(SCORES)
            _bump(self.scores, float(labels["le"]), value)

    def snapshot(self) -> Snapshot:
        return Snapshot(self.requests, self.errors, _sorted(self.latency), self.classes, _sorted(self.scores))


def _is_5xx(code: str) -> bool:
    return code.isdigit() and 500 <= int(code) <= 599


def _bump(counts: dict | None, key: Any, value: float) -> None:
    counts[key] = counts.get(key, 0.0) + value  # type: ignore[index]


def _sorted(buckets: dict[float, float] | None) -> dict[float, float] | None:
    return None if buckets is None else dict(sorted(buckets.items()))


def parse(text: str) -> Snapshot:
    """One pod's /metrics (Prometheus text format) as a Snapshot, summed over the model_version,
    protocol and endpoint labels: a canary is judged as a whole, HTTP and gRPC alike. Samples are
    matched by their full names (`..._total`, `..._bucket`) because the parser's family names drop
    `_total` for typed counters but not for untyped ones. Raises ValueError on text that is not the
    exposition format (a proxy's error page, a truncated body)."""
    tally = _Tally()
    try:
        for family in text_string_to_metric_families(text):
            tally.saw(family.name)
            for sample in family.samples:
                if math.isfinite(sample.value):
                    tally.add(sample.name, sample.labels, float(sample.value))
    except (ValueError, KeyError, IndexError) as e:
        raise ValueError(f"not the Prometheus text exposition format: {e}") from e
    return tally.snapshot()


def _less(before: Mapping | None, after: Mapping | None) -> bool:
    return bool(before) and any(v > (after or {}).get(k, 0.0) for k, v in before.items())  # type: ignore[union-attr]


def _went_down(before: Snapshot, after: Snapshot) -> bool:
    return (after.requests < before.requests or after.errors < before.errors
            or _less(before.latency, after.latency) or _less(before.classes, after.classes)
            or _less(before.scores, after.scores))


def _minus(before: Mapping | None, after: Mapping | None) -> dict | None:
    if after is None:
        return None
    return {k: v - (before or {}).get(k, 0.0) for k, v in after.items()}


def delta(before: Snapshot | None, after: Snapshot) -> Snapshot:
    """What one pod served between two scrapes. Counters only rise while a process lives, so any that
    fell (a key that vanished counts as 0) means the pod restarted in between: then everything it
    has counted happened since, and `after` is the delta. A pod new to the window has no `before`.
    (A restart that served more than before by the next scrape cannot be seen in counters, the same
    blind spot Prometheus's rate() has.)"""
    if before is None or _went_down(before, after):
        return after
    return Snapshot(after.requests - before.requests, after.errors - before.errors,
                    _minus(before.latency, after.latency), _minus(before.classes, after.classes),
                    _minus(before.scores, after.scores))


def _sum_counts(maps: list[dict[str, float] | None]) -> dict[str, float] | None:
    present = [m for m in maps if m is not None]
    if not present:
        return None
    out: dict[str, float] = {}
    for m in present:
        for k, v in m.items():
            out[k] = out.get(k, 0.0) + v
    return out


def _sum_cumulative(maps: list[dict[float, float] | None]) -> dict[float, float] | None:
    """Cumulative buckets add only at edges every pod has (a pod's count below an edge it lacks is
    unknown), so pods with different bucket layouts sum on their shared edges."""
    present = [m for m in maps if m is not None]
    if not present:
        return None
    nonempty = [m for m in present if m]
    if not nonempty:
        return {}
    edges = set.intersection(*(set(m) for m in nonempty))
    return {le: sum(m[le] for m in nonempty) for le in sorted(edges)}


def total(snapshots: Iterable[Snapshot]) -> Snapshot:
    """One side (every canary pod, or every stable pod) as one Snapshot. A metric counts as exposed
    when any pod exposes it, so a side half-way through an upgrade of modelops-serve is still judged."""
    snaps = list(snapshots)
    return Snapshot(sum(s.requests for s in snaps), sum(s.errors for s in snaps),
                    _sum_cumulative([s.latency for s in snaps]), _sum_counts([s.classes for s in snaps]),
                    _sum_cumulative([s.scores for s in snaps]))


def quantile(q: float, cumulative_buckets: Mapping[float, float]) -> float:
    """The q-quantile of a histogram exactly as PromQL's histogram_quantile computes it, so the
    number in a verdict matches the dashboard's: linear interpolation inside the bucket holding rank
    q * count, the first bucket starting at 0, and a rank in the +Inf bucket answered by the largest
    finite edge (so a p99 beyond the last edge reads as that edge). NaN without observations or
    without a +Inf bucket; non-monotonic counts (a scrape torn across series) are evened upward."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    edges = sorted(cumulative_buckets)
    if len(edges) < 2 or not math.isinf(edges[-1]):
        return math.nan
    counts, running = [], 0.0
    for le in edges:
        running = max(running, cumulative_buckets[le])
        counts.append(running)
    if counts[-1] == 0:
        return math.nan
    rank = q * counts[-1]
    b = next((i for i in range(len(edges) - 1) if counts[i] >= rank), len(edges) - 1)
    if b == len(edges) - 1:
        return edges[-2]
    if b == 0 and edges[0] <= 0:
        return edges[0]
    start = edges[b - 1] if b > 0 else 0.0
    below = counts[b - 1] if b > 0 else 0.0
    return start + (edges[b] - start) * ((rank - below) / (counts[b] - below))


# ---------------------------------------------------------------- statistics


def _log_gamma_prefix(a: float, x: float) -> float:
    return -x + a * math.log(x) - math.lgamma(a)


def _gamma_p_series(a: float, x: float) -> float:
    """P(a, x) by its power series, which converges fast for x < a + 1."""
    term = total_ = 1.0 / a
    n = a
    for _ in range(_MAX_TERMS):
        n += 1
        term *= x / n
        total_ += term
        if abs(term) < abs(total_) * _EPS:
            break
    return total_ * math.exp(_log_gamma_prefix(a, x))


def _gamma_q_fraction(a: float, x: float) -> float:
    """Q(a, x) by its continued fraction (modified Lentz), which converges fast for x >= a + 1 and
    keeps relative precision in the far tail, where 1 - P would round to 0."""
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_TERMS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        step = d * c
        h *= step
        if abs(step - 1.0) < _EPS:
            break
    return math.exp(_log_gamma_prefix(a, x)) * h


def gamma_q(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x) = Gamma(a, x) / Gamma(a), a > 0."""
    if not a > 0:
        raise ValueError(f"gamma_q needs a > 0, got {a!r}")
    if x <= 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    if x < a + 1.0:
        return max(0.0, 1.0 - _gamma_p_series(a, x))
    return _gamma_q_fraction(a, x)


def chi2_sf(x: float, df: float) -> float:
    """P(X >= x) for X chi-squared with df degrees of freedom: Q(df / 2, x / 2)."""
    if not df > 0:
        raise ValueError(f"chi2_sf needs df > 0, got {df!r}")
    return gamma_q(df / 2.0, x / 2.0)


def chi2_homogeneity(a: Mapping[str, float], b: Mapping[str, float]) -> tuple[float, int, float]:
    """(statistic, df, p) of Pearson's chi-squared test that two rows of counts over the same
    categories come from one distribution. Categories empty in both rows carry no information and are
    dropped; with fewer than two left, or an empty row, there is nothing to test (0, 0, 1)."""
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k, 0.0) + b.get(k, 0.0) > 0]
    n_a, n_b = sum(a.get(k, 0.0) for k in keys), sum(b.get(k, 0.0) for k in keys)
    if len(keys) < 2 or n_a <= 0 or n_b <= 0:
        return 0.0, 0, 1.0
    n = n_a + n_b
    stat = 0.0
    for k in keys:
        column = a.get(k, 0.0) + b.get(k, 0.0)
        for observed, row in ((a.get(k, 0.0), n_a), (b.get(k, 0.0), n_b)):
            expected = row * column / n
            stat += (observed - expected) ** 2 / expected
    df = len(keys) - 1
    return stat, df, chi2_sf(stat, df)


def pool_sparse(a: Mapping[str, float], b: Mapping[str, float], min_expected: float = MIN_EXPECTED
                ) -> tuple[dict[str, float], dict[str, float], int]:
    """The two rows with every category whose smaller expected cell is under `min_expected` merged
    into one "(pooled)" column, and how many were merged. With 64 classes and a canary of a few
    hundred rows most cells are nearly empty; there the chi-squared tail is too light and the
    test rejects two to four times as often as it should at the small alphas a Bonferroni correction
    asks for (simulated), while pooled it holds its level."""
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k, 0.0) + b.get(k, 0.0) > 0]
    n_a, n_b = sum(a.get(k, 0.0) for k in keys), sum(b.get(k, 0.0) for k in keys)
    n = n_a + n_b
    out_a: dict[str, float] = {}
    out_b: dict[str, float] = {}
    pooled = 0
    for k in keys:
        column = a.get(k, 0.0) + b.get(k, 0.0)
        sparse = n > 0 and min(n_a, n_b) * column / n < min_expected
        key = "(pooled)" if sparse else k
        pooled += sparse
        out_a[key] = out_a.get(key, 0.0) + a.get(k, 0.0)
        out_b[key] = out_b.get(key, 0.0) + b.get(k, 0.0)
    return out_a, out_b, pooled


def total_variation(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Half the L1 distance between the two rows' shares: the fraction of rows whose class would
    have to change to turn one mix into the other."""
    n_a, n_b = sum(a.values()), sum(b.values())
    if n_a <= 0 or n_b <= 0:
        return 0.0
    return 0.5 * sum(abs(a.get(k, 0.0) / n_a - b.get(k, 0.0) / n_b) for k in set(a) | set(b))


def kolmogorov_sf(lam: float) -> float:
    """P(K > lam) for the Kolmogorov distribution, the limit of sqrt(n) D. Below 1.18 the theta
    series of the CDF converges in a few terms, above it the alternating series of the tail does;
    either is then exact to rounding."""
    if lam < 0.1:  # the CDF is below 1e-50 there (and lam squared may underflow)
        return 1.0
    if lam < 1.18:
        y = math.exp(-math.pi ** 2 / (8.0 * lam * lam))
        cdf = math.sqrt(2.0 * math.pi) / lam * sum(y ** ((2 * j - 1) ** 2) for j in range(1, 8))
        return min(1.0, max(0.0, 1.0 - cdf))
    tail = 0.0
    for j in range(1, 101):
        term = math.exp(-2.0 * j * j * lam * lam)
        tail += term if j % 2 else -term
        if term < _EPS * tail:
            break
    return min(1.0, max(0.0, 2.0 * tail))


def ks_binned(cum_a: Mapping[float, float], cum_b: Mapping[float, float]) -> tuple[float, float, float]:
    """(D, p, edge) of the two-sample Kolmogorov-Smirnov test on two cumulative histograms: D is the
    largest gap between the two empirical CDFs at the edges both share, `edge` where it is. The
    p-value is the asymptotic Kolmogorov tail at Stephens' corrected (sqrt(n) + 0.12 + 0.11/sqrt(n))
    D, n = n1 n2 / (n1 + n2). Bins hide gaps between edges, so D can only be under-read and the
    p-value errs on the side of not failing. Each side's size is its count at its largest edge
    (+Inf); without shared edges or rows there is nothing to test (0, 1, NaN)."""
    if not cum_a or not cum_b:
        return 0.0, 1.0, math.nan
    n_a, n_b = cum_a[max(cum_a)], cum_b[max(cum_b)]
    edges = sorted(set(cum_a) & set(cum_b))
    if not edges or n_a <= 0 or n_b <= 0:
        return 0.0, 1.0, math.nan
    at = max(edges, key=lambda le: abs(cum_a[le] / n_a - cum_b[le] / n_b))  # the first edge of the largest gap
    gap = abs(cum_a[at] / n_a - cum_b[at] / n_b)
    root = math.sqrt(n_a * n_b / (n_a + n_b))
    return gap, kolmogorov_sf((root + 0.12 + 0.11 / root) * gap), at


def two_proportion_z(k_a: float, n_a: float, k_b: float, n_b: float) -> tuple[float, float]:
    """(z, p) of the one-sided pooled two-proportion z test that a's rate exceeds b's. Pooled because
    under the null both sides share one rate. An approximation: with a handful of errors against a
    near-zero stable rate it overstates significance, which is why a failure also needs the rate
    increase to exceed its threshold. No spread (no rows, or all or none failing on both) is no
    evidence: (0, 1)."""
    if n_a <= 0 or n_b <= 0:
        return 0.0, 1.0
    pooled = (k_a + k_b) / (n_a + n_b)
    var = pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b)
    if var <= 0:
        return 0.0, 1.0
    z = (k_a / n_a - k_b / n_b) / math.sqrt(var)
    return z, 0.5 * math.erfc(z / math.sqrt(2.0))


# ---------------------------------------------------------------- thresholds


def _check_fraction(name: str, value: Any, low: float = 0.0, high: float = 1.0) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and low <= value <= high):
        raise ValueError(f"thresholds.{name} must be a number in [{low:g}, {high:g}], got {value!r}")


@dataclass(frozen=True)
class Thresholds:
    """How bad a canary must look, and how sure the operator must be, before it rolls back."""

    # Canary inference requests needed before anything is judged, and rows (predicted classes,
    # scores) each distribution test needs on both sides: fewer cannot tell a bad version from luck.
    min_samples: int = 100
    # Absolute: canary 5xx rate minus stable's. One point more of failed requests is a real outage.
    max_error_rate_increase: float = 0.01
    # Canary p99 over stable p99.
    max_latency_ratio: float = 1.5
    # A p99 gap under this never fails: a p99 read off the histogram moves a whole bucket (10 -> 25 ms)
    # on a few slow requests, which a new pod's first requests or a busy node give any version
    # (benchmarks/canary.py saw an honest canary at 20 ms vs 9 ms), and a few milliseconds on a fast
    # model is a ratio, not a slowdown anyone feels.
    latency_floor_s: float = 0.025
    # Total variation distance between the predicted-class mixes: the share of rows whose class moved.
    max_class_shift: float = 0.05
    # Kolmogorov-Smirnov D between the top-1 score distributions.
    max_score_ks: float = 0.1
    # Family-wise error over every look of the canary: each test runs at alpha / looks.
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if not isinstance(self.min_samples, int) or isinstance(self.min_samples, bool) or self.min_samples < 1:
            raise ValueError(f"thresholds.min_samples must be an integer >= 1, got {self.min_samples!r}")
        _check_fraction("max_error_rate_increase", self.max_error_rate_increase)
        _check_fraction("max_latency_ratio", self.max_latency_ratio, 1.0, math.inf)
        _check_fraction("latency_floor_s", self.latency_floor_s, 0.0, math.inf)
        _check_fraction("max_class_shift", self.max_class_shift)
        _check_fraction("max_score_ks", self.max_score_ks)
        if not (isinstance(self.alpha, (int, float)) and 0 < self.alpha < 1):
            raise ValueError(f"thresholds.alpha must be in (0, 1), got {self.alpha!r}")

    def evidence(self) -> dict[str, Any]:
        return {"minSamples": self.min_samples, "maxErrorRateIncrease": self.max_error_rate_increase,
                "maxLatencyRatio": self.max_latency_ratio, "latencyFloorSeconds": self.latency_floor_s,
                "maxClassShift": self.max_class_shift, "maxScoreKS": self.max_score_ks, "alpha": self.alpha}


# ---------------------------------------------------------------- checks


PASSED, FAILED, TOO_FEW, NOT_EXPOSED = "passed", "failed", "tooFewSamples", "notExposed"


@dataclass(frozen=True)
class _Result:
    key: str  # the check's evidence key
    status: str  # PASSED | FAILED | TOO_FEW | NOT_EXPOSED
    text: str  # the message's clause: why it failed, what passed, what is missing or skipped
    evidence: dict = field(default_factory=dict)
    reason: str = ""  # set when FAILED


@dataclass(frozen=True)
class _Test:
    """The significance level of one look and how to say it."""

    level: float
    alpha: float
    looks: int

    def says(self, p: float) -> str:
        op = "<" if p < self.level else ">="
        return f"p {p:.2g} {op} alpha {self.alpha:g} / {self.looks} looks"


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:.3g} ms"


def _int(x: float) -> int:
    return int(round(x))


def _not_exposed(key: str, metric: str, what: str, canary: Any, stable: Any) -> _Result:
    sides = [side for side, m in (("canary", canary), ("stable", stable)) if m is None]
    text = (f"the {' and '.join(sides)} pods do not expose {metric} (an older modelops-serve): "
            f"{what} not compared")
    return _Result(key, NOT_EXPOSED, text, {"status": NOT_EXPOSED, "missing": sides})


def _too_few(key: str, what: str, counts: dict[str, float], t: Thresholds, evidence: dict) -> _Result | None:
    short = [f"{side} {_int(n)}" for side, n in counts.items() if n < t.min_samples]
    if not short:
        return None
    text = f"{what}: {' and '.join(short)}, fewer than minSamples {t.min_samples}"
    return _Result(key, TOO_FEW, text, {**evidence, "status": TOO_FEW})


def _error_check(canary: Snapshot, stable: Snapshot, t: Thresholds, test: _Test) -> _Result:
    n_c, n_s = canary.requests, stable.requests
    counts = {"canaryRequests": _int(n_c), "canaryErrors": _int(canary.errors),
              "stableRequests": _int(n_s), "stableErrors": _int(stable.errors)}
    few = _too_few("errorRate", "inference requests", {"stable": n_s}, t, counts)
    if few:
        return few
    r_c, r_s = canary.errors / n_c, stable.errors / n_s
    z, p = two_proportion_z(canary.errors, n_c, stable.errors, n_s)
    increase = r_c - r_s
    evidence = {**counts, "canaryRate": _sig(r_c), "stableRate": _sig(r_s), "increase": _sig(increase),
                "z": _sig(z), "p": _sig(p)}
    head = f"error rate {_pct(r_c)} ({_int(canary.errors)} of {_int(n_c)} inference requests answered 5xx)" \
           f" vs {_pct(r_s)} on stable ({_int(stable.errors)} of {_int(n_s)})"
    limit = f"maxErrorRateIncrease {_pct_g(t.max_error_rate_increase)}"
    if increase > t.max_error_rate_increase and p < test.level:
        return _Result("errorRate", FAILED, f"{head}: up {_pct(increase)} > {limit}, z test {test.says(p)}",
                       {**evidence, "status": FAILED}, "ErrorRateIncreased")
    why = f"up {_pct(increase)} > {limit} but not significant, {test.says(p)}" \
        if increase > t.max_error_rate_increase else f"within {limit}"
    return _Result("errorRate", PASSED, f"error rate {_pct(r_c)} vs {_pct(r_s)} on stable, {why}",
                   {**evidence, "status": PASSED})


def _latency_check(canary: Snapshot, stable: Snapshot, t: Thresholds, test: _Test) -> _Result:
    """The effect must clear both the ratio and the absolute floor, on at least min_samples requests a
    side, and be significant: more of the canary's requests are slower than the bucket edge at or above
    the stable p99 than of the stable's (one-sided two-proportion test). A p99 from a histogram alone
    moves a whole bucket (10 -> 25 ms) on a few slow requests, as a busy node gives any version."""
    if canary.latency is None or stable.latency is None:
        return _not_exposed("latency", LATENCY, "latencies", canary.latency, stable.latency)
    n_c, n_s = canary.latency.get(math.inf, 0.0), stable.latency.get(math.inf, 0.0)
    counts = {"canaryCount": _int(n_c), "stableCount": _int(n_s)}
    few = _too_few("latency", "timed inference requests", {"canary": n_c, "stable": n_s}, t, counts)
    if few:
        return few
    p_c, p_s = quantile(0.99, canary.latency), quantile(0.99, stable.latency)
    ratio = p_c / p_s if p_s > 0 else (math.inf if p_c > 0 else 1.0)
    gap = p_c - p_s
    edge = min((e for e in stable.latency if e >= p_s and math.isfinite(e) and e in canary.latency), default=None)
    slow_c = n_c - canary.latency[edge] if edge is not None else 0.0
    slow_s = n_s - stable.latency[edge] if edge is not None else 0.0
    z, p = two_proportion_z(slow_c, n_c, slow_s, n_s) if edge is not None else (0.0, 1.0)
    evidence = {**counts, "canaryP99Seconds": _sig(p_c), "stableP99Seconds": _sig(p_s), "ratio": _sig(ratio),
                "differenceSeconds": _sig(gap), "slowerThanSeconds": _sig(edge) if edge is not None else None,
                "canarySlower": _int(slow_c), "stableSlower": _int(slow_s), "z": _sig(z), "p": _sig(p)}
    head = f"p99 latency {_ms(p_c)} vs {_ms(p_s)} on stable"
    limit = f"maxLatencyRatio {_num(t.max_latency_ratio)}"
    big = ratio > t.max_latency_ratio and gap >= t.latency_floor_s
    if big and p < test.level:
        return _Result("latency", FAILED, f"{head}: {_num(ratio)}x > {limit} and {_ms(gap)} slower, at or "
                                          f"beyond the {_ms(t.latency_floor_s)} floor; {_int(slow_c)} of "
                                          f"{_int(n_c)} canary requests slower than {_ms(edge)} vs "
                                          f"{_int(slow_s)} of {_int(n_s)} on stable, {test.says(p)}",
                       {**evidence, "status": FAILED}, "LatencyIncreased")
    if big:
        why = (f"{_num(ratio)}x > {limit} and {_ms(gap)} slower, but not significant: {_int(slow_c)} of "
               f"{_int(n_c)} canary requests slower than {_ms(edge) if edge is not None else 'the last bucket'} "
               f"vs {_int(slow_s)} of {_int(n_s)} on stable, {test.says(p)}")
    elif ratio > t.max_latency_ratio:
        why = f"{_num(ratio)}x > {limit} but only {_ms(gap)} slower, under the {_ms(t.latency_floor_s)} floor"
    else:
        why = f"{_num(ratio)}x, within {limit}"
    return _Result("latency", PASSED, f"{head}, {why}", {**evidence, "status": PASSED})


def _largest_move(canary: Mapping[str, float], stable: Mapping[str, float]) -> tuple[str, float, float]:
    n_c, n_s = sum(canary.values()), sum(stable.values())
    shares = {k: (canary.get(k, 0.0) / n_c, stable.get(k, 0.0) / n_s) for k in sorted(set(canary) | set(stable))}
    name = max(shares, key=lambda k: abs(shares[k][0] - shares[k][1]))
    return name, *shares[name]


def _class_check(canary: Snapshot, stable: Snapshot, t: Thresholds, test: _Test) -> _Result:
    """Effect and test on the same table: sparse classes pooled (see pool_sparse), whose noise
    would otherwise dwarf any threshold on a 64-class model."""
    if canary.classes is None or stable.classes is None:
        return _not_exposed("predictions", PREDICTIONS + "_total", "predicted classes", canary.classes,
                            stable.classes)
    n_c, n_s = sum(canary.classes.values()), sum(stable.classes.values())
    counts = {"canaryRows": _int(n_c), "stableRows": _int(n_s)}
    few = _too_few("predictions", "rows with a predicted class", {"canary": n_c, "stable": n_s}, t, counts)
    if few:
        return few
    a, b, pooled = pool_sparse(canary.classes, stable.classes)
    shift = total_variation(a, b)
    stat, df, p = chi2_homogeneity(a, b)
    name, share_c, share_s = _largest_move(canary.classes, stable.classes)
    seen = {k for side in (canary.classes, stable.classes) for k, v in side.items() if v > 0}
    evidence = {**counts, "classes": len(seen),
                "pooledClasses": pooled, "totalVariation": _sig(shift), "chi2": _sig(stat), "df": df,
                "p": _sig(p), "largestMoveClass": name, "canaryShare": _sig(share_c), "stableShare": _sig(share_s)}
    limit = f"maxClassShift {_pct_g(t.max_class_shift)}"
    head = f"predicted classes moved by {_pct(shift)} of rows (total variation over {_int(n_c)} canary and " \
           f"{_int(n_s)} stable rows)"
    if shift > t.max_class_shift and p < test.level:
        return _Result("predictions", FAILED,
                       f"{head} > {limit}, class {name} {_pct(share_s)} -> {_pct(share_c)}; chi-squared "
                       f"{_num(stat)} on {df} df, {test.says(p)}", {**evidence, "status": FAILED},
                       "PredictionsShifted")
    why = f"> {limit} but not significant, {test.says(p)}" if shift > t.max_class_shift else f"within {limit}"
    return _Result("predictions", PASSED, f"class mix moved {_pct(shift)}, {why}", {**evidence, "status": PASSED})


def _score_check(canary: Snapshot, stable: Snapshot, t: Thresholds, test: _Test) -> _Result:
    if canary.scores is None or stable.scores is None:
        return _not_exposed("scores", SCORES + "_bucket", "scores", canary.scores, stable.scores)
    n_c = canary.scores[max(canary.scores)] if canary.scores else 0.0
    n_s = stable.scores[max(stable.scores)] if stable.scores else 0.0
    counts = {"canaryRows": _int(n_c), "stableRows": _int(n_s)}
    few = _too_few("scores", "rows with a score", {"canary": n_c, "stable": n_s}, t, counts)
    if few:
        return few
    d, p, edge = ks_binned(canary.scores, stable.scores)
    if math.isnan(edge):
        return _Result("scores", NOT_EXPOSED, "the two sides' score histograms share no bucket edge: scores not "
                       "compared", {**counts, "status": NOT_EXPOSED, "missing": []})
    below_c, below_s = canary.scores[edge] / n_c, stable.scores[edge] / n_s
    evidence = {**counts, "ks": _sig(d), "p": _sig(p), "atScore": None, "canaryBelow": None, "stableBelow": None}
    if d > 0:  # where the CDFs part, and how far: the numbers a user checks against the dashboard
        evidence.update(atScore=_sig(edge), canaryBelow=_sig(below_c), stableBelow=_sig(below_s))
    limit = f"maxScoreKS {_num(t.max_score_ks)}"
    if d > t.max_score_ks and p < test.level:
        return _Result("scores", FAILED,
                       f"top-1 scores shifted: {_pct(below_c)} of canary rows score <= {_num(edge)} vs "
                       f"{_pct(below_s)} of stable's, KS D {_num(d)} > {limit}, {test.says(p)}",
                       {**evidence, "status": FAILED}, "ScoresShifted")
    why = f"> {limit} but not significant, {test.says(p)}" if d > t.max_score_ks else f"within {limit}"
    return _Result("scores", PASSED, f"score KS D {_num(d)}, {why}", {**evidence, "status": PASSED})


# ---------------------------------------------------------------- verdict


def judge(canary: Snapshot, stable: Snapshot, t: Thresholds, looks: int) -> Verdict:
    """Judge the canary's window against stable's.

    A check fails only when its effect exceeds its threshold and, for the error rate, the class mix
    and the scores, its test is significant at alpha / looks, `looks` being every look planned over
    the whole canary. The operator looks again every few seconds and rolls back at the first
    failure; testing each look at alpha / looks (Bonferroni) keeps the chance that a healthy canary
    is ever rolled back under alpha whatever the stopping rule, conservative as that is. Latency has
    no test, so only its effect and floor count.

    Fail when any check fails (the first in order names it; all are in evidence.failed), even if
    others lack rows; Inconclusive (TooFewSamples) when the canary has served fewer than minSamples
    inference requests, or a check lacks rows; otherwise Pass (CanaryHealthy). A metric an older
    server does not expose skips its check with a note in evidence.notes."""
    if not isinstance(looks, int) or isinstance(looks, bool) or looks < 1:
        raise ValueError(f"looks must be an integer >= 1, got {looks!r}")
    test = _Test(t.alpha / looks, t.alpha, looks)
    base = {"canaryRequests": _int(canary.requests), "stableRequests": _int(stable.requests), "looks": looks,
            "alphaPerLook": _sig(test.level), "thresholds": t.evidence()}
    if canary.requests < t.min_samples:
        return Verdict(INCONCLUSIVE, "TooFewSamples",
                       f"Only {_int(canary.requests)} inference requests reached the canary in the window, fewer "
                       f"than minSamples {t.min_samples}: nothing is judged until then.",
                       {**base, "failed": [], "undecided": ["requests"], "notes": []})
    results = [_error_check(canary, stable, t, test), _latency_check(canary, stable, t, test),
               _class_check(canary, stable, t, test), _score_check(canary, stable, t, test)]
    return _verdict(results, canary, stable, base)


def _verdict(results: list[_Result], canary: Snapshot, stable: Snapshot, base: dict) -> Verdict:
    failed = [r for r in results if r.status == FAILED]
    undecided = [r for r in results if r.status == TOO_FEW]
    notes = [r.text for r in results if r.status == NOT_EXPOSED]
    evidence = {**base, **{r.key: r.evidence for r in results}, "failed": [r.reason for r in failed],
                "undecided": [r.key for r in undecided], "notes": notes}
    if failed:
        more = f" Also failed: {', '.join(r.reason for r in failed[1:])}." if len(failed) > 1 else ""
        return Verdict(FAIL, failed[0].reason, f"Canary: {failed[0].text}.{more}", evidence)
    if undecided:
        return Verdict(INCONCLUSIVE, "TooFewSamples",
                       f"Not enough traffic to judge the canary yet: {'; '.join(r.text for r in undecided)}.",
                       evidence)
    passed = "; ".join(r.text for r in results if r.status == PASSED)
    skipped = f" Skipped: {'; '.join(notes)}." if notes else ""
    return Verdict(PASS, "CanaryHealthy",
                   f"The canary served like stable over {_int(canary.requests)} and {_int(stable.requests)} "
                   f"inference requests: {passed}.{skipped}", evidence)


def _seconds(name: str, value: Any) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")


def step_decision(verdict_outcome: str, elapsed_s: float, window_s: float, max_duration_s: float) -> str:
    """What a canary step does after a look: "fail" (roll back) at the first Fail, since a significant
    failure needs no more evidence; "pass" (next step) only once the step's window has elapsed, so
    every step sees its full window of traffic even when early looks already pass; "inconclusive"
    once max_duration has passed without a decision (the rollout's onInconclusive then decides);
    otherwise "wait"."""
    for name, value in (("elapsed_s", elapsed_s), ("window_s", window_s), ("max_duration_s", max_duration_s)):
        _seconds(name, value)
    if window_s > max_duration_s:
        raise ValueError(f"window_s {window_s:g} is longer than max_duration_s {max_duration_s:g}: "
                         "the step could never pass")
    if verdict_outcome == FAIL:
        return "fail"
    if verdict_outcome == PASS:
        return "pass" if elapsed_s >= window_s else "wait"
    if verdict_outcome == INCONCLUSIVE:
        return "inconclusive" if elapsed_s >= max_duration_s else "wait"
    raise ValueError(f"verdict outcome must be Pass, Fail or Inconclusive, got {verdict_outcome!r}")
