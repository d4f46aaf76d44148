"""Verdicts on model behaviour: is the candidate version answering like the serving one?

The operator replays the same inputs to a candidate pod and a serving pod; this module judges the
two answers. It is pure decision code (lists in, a `Verdict` out, no I/O) and uses no numpy, which
the operator image does not carry. Every statistic is one a user can check by hand: the top-1 flip
rate with exact Clopper-Pearson bounds (so a handful of rows cannot pass or fail a version by
luck), the mean per-row score change, the population stability index of each class's scores, and
accuracy on labelled rows with an exact one-sided McNemar test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

PASS, FAIL, INCONCLUSIVE = "Pass", "Fail", "Inconclusive"
ACTIONS = ("proceed", "hold", "reject")
_BISECTION_STEPS = 64  # halves [0, 1] to below 1e-19, finer than any float difference we report


@dataclass(frozen=True)
class Thresholds:
    max_flip_rate: float = 0.10  # top-1 disagreement rate
    max_mean_score_delta: float = 0.10  # mean over rows of max_c |p_c - q_c|
    max_score_psi: float = 1.0  # max over classes of PSI(serving scores, candidate scores)
    max_accuracy_drop: float = 0.03  # serving accuracy - candidate accuracy, on labelled rows
    min_samples: int = 50  # fewer replayed rows: Inconclusive
    confidence: float = 0.95

    def __post_init__(self) -> None:
        for name in ("max_flip_rate", "max_mean_score_delta", "max_score_psi", "max_accuracy_drop"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"thresholds.{name} must be a finite number >= 0, got {value!r}")
        if not isinstance(self.min_samples, int) or isinstance(self.min_samples, bool) or self.min_samples < 1:
            raise ValueError(f"thresholds.min_samples must be an integer >= 1, got {self.min_samples!r}")
        if not (isinstance(self.confidence, (int, float)) and 0.5 <= self.confidence < 1):
            raise ValueError(f"thresholds.confidence must be in [0.5, 1), got {self.confidence!r}")

    def evidence(self) -> dict[str, Any]:
        return {"maxFlipRate": self.max_flip_rate, "maxMeanScoreDelta": self.max_mean_score_delta,
                "maxScorePSI": self.max_score_psi, "maxAccuracyDrop": self.max_accuracy_drop,
                "minSamples": self.min_samples, "confidence": self.confidence}


@dataclass(frozen=True)
class Verdict:
    outcome: str  # "Pass" | "Fail" | "Inconclusive"
    reason: str  # CamelCase, e.g. ReplayAgreed, PredictionsFlipped, TooFewSamples
    message: str  # one or two sentences for an Event: the numbers and the thresholds
    evidence: dict = field(default_factory=dict)  # JSON-safe, camelCase keys, for status.analysis


# ---------------------------------------------------------------- statistics


def _check_k_n(k: int, n: int) -> None:
    if not (isinstance(k, int) and isinstance(n, int) and 0 <= k <= n):
        raise ValueError(f"need integers 0 <= k <= n, got k={k!r}, n={n!r}")


def _check_confidence(confidence: float) -> None:
    if not (isinstance(confidence, (int, float)) and 0 < confidence < 1):
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _binomial_sum(log_coeffs: list[float], n: int, js: range, p: float) -> float:
    """sum over j in js of P(X = j) for X ~ Bin(n, p), 0 < p < 1, each term in log space."""
    lp, lq = math.log(p), math.log1p(-p)
    return sum(math.exp(log_coeffs[j] + j * lp + (n - j) * lq) for j in js)


def _at_least(log_coeffs: list[float], n: int, k: int, p: float) -> float:
    """P(X >= k), summing the shorter side: the targets are about 1 - confidence, far above the
    rounding error of a complement, and the short side keeps a few thousand rows fast."""
    if n - k + 1 <= k:
        return _binomial_sum(log_coeffs, n, range(k, n + 1), p)
    return 1.0 - _binomial_sum(log_coeffs, n, range(0, k), p)


def _log_coeffs(n: int) -> list[float]:
    top = math.lgamma(n + 1)
    return [top - math.lgamma(j + 1) - math.lgamma(n - j + 1) for j in range(n + 1)]


def _bisect(f, target: float, increasing: bool) -> float:
    """The p in (0, 1) where the monotone f(p) crosses target."""
    lo, hi = 0.0, 1.0
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        if (f(mid) < target) == increasing:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """One-sided exact bounds on a binomial rate, each holding at `confidence`: the lower bound is
    the p at which seeing k or more of n has probability 1 - confidence, the upper bound the p at
    which seeing k or fewer has. (Together: the two-sided interval at 1 - 2 (1 - confidence).)"""
    _check_k_n(k, n)
    _check_confidence(confidence)
    if n == 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence
    coeffs = _log_coeffs(n)
    lower = 0.0 if k == 0 else _bisect(lambda p: _at_least(coeffs, n, k, p), alpha, True)
    upper = 1.0 if k == n else _bisect(lambda p: 1.0 - _at_least(coeffs, n, k + 1, p), alpha, False)
    return lower, upper


def mcnemar_p(b: int, c: int) -> float:
    """Exact one-sided McNemar p-value that the candidate is worse: P(X >= b), X ~ Bin(b + c, 1/2).
    b counts rows only serving got right, c rows only the candidate got right; ties carry no
    information about which is better, so only discordant rows count."""
    if not (isinstance(b, int) and isinstance(c, int) and b >= 0 and c >= 0):
        raise ValueError(f"need integers b, c >= 0, got b={b!r}, c={c!r}")
    n = b + c
    if n == 0:
        return 1.0
    return sum(math.comb(n, j) for j in range(b, n + 1)) / 2**n  # exact integers, one rounding


def _proportions(values: list[float], bins: int, eps: float) -> list[float]:
    counts = [0] * bins
    for x in values:
        counts[min(int(min(max(x, 0.0), 1.0) * bins), bins - 1)] += 1
    return [count / len(values) or eps for count in counts]


def psi(expected: list[float], actual: list[float], bins: int = 10, eps: float = 1e-4) -> float:
    """Population stability index of `actual` against `expected`, on equal-width bins of [0, 1]
    (scores are probabilities; values outside are clamped). Empty bins count as `eps` so the log
    stays finite."""
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
    if not 0 < eps < 1:
        raise ValueError(f"eps must be in (0, 1), got {eps!r}")
    for name, values in (("expected", expected), ("actual", actual)):
        if not values:
            raise ValueError(f"{name} is empty")
        if not all(math.isfinite(x) for x in values):
            raise ValueError(f"{name} holds a non-finite value")
    e, a = _proportions(expected, bins, eps), _proportions(actual, bins, eps)
    return sum((ai - ei) * math.log(ai / ei) for ei, ai in zip(e, a, strict=True))


def top1(scores: list[list[float]]) -> list[int]:
    """The predicted class per row: the first argmax, or for a single-column output (the positive
    class's probability) 1 when the score is at least 0.5."""
    out = []
    for i, row in enumerate(scores):
        if not row:
            raise ValueError(f"scores row {i} is empty")
        if len(row) == 1:
            out.append(1 if row[0] >= 0.5 else 0)
        else:
            out.append(max(range(len(row)), key=row.__getitem__))
    return out


def flip_matrix(serving_top: list[int], candidate_top: list[int], classes: int) -> list[list[int]]:
    """counts[serving class][candidate class]; the diagonal is agreement."""
    if len(serving_top) != len(candidate_top):
        raise ValueError(f"serving_top has {len(serving_top)} rows, candidate_top {len(candidate_top)}")
    matrix = [[0] * classes for _ in range(classes)]
    for s, c in zip(serving_top, candidate_top, strict=True):
        if not (0 <= s < classes and 0 <= c < classes):
            raise ValueError(f"class pair ({s}, {c}) outside 0..{classes - 1}")
        matrix[s][c] += 1
    return matrix


# ---------------------------------------------------------------- formatting


def _sig(x: float) -> float | str:
    """4 significant digits; non-finite numbers spelt as strings so the evidence stays JSON."""
    if not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    return float(f"{x:.4g}")


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _pct_g(x: float) -> str:
    return f"{100 * x:g} %"


def _num(x: float) -> str:
    return f"{x:.4g}"


# ---------------------------------------------------------------- replay comparison


def _finite_row(row: list[float]) -> bool:
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in row)


def _width(name: str, scores: list[list[float]]) -> int | None:
    widths = {len(row) for row in scores}
    if len(widths) > 1:
        raise ValueError(f"{name} rows have different widths: {sorted(widths)}")
    width = widths.pop() if widths else None
    if width == 0:
        raise ValueError(f"{name} rows are empty")
    return width


@dataclass(frozen=True)
class _Check:
    reason: str
    message: str


def _flip_check(k: int, n: int, t: Thresholds, serving_version: str) -> tuple[_Check | None, bool, dict]:
    """(failure or None, decided, evidence): the flip rate fails only when even its lower bound is
    above the maximum, and passes only when its upper bound is not."""
    lower, upper = clopper_pearson(k, n, t.confidence)
    rate = k / n
    conf = _pct_g(t.confidence)
    evidence = {"flips": k, "flipRate": _sig(rate), "flipRateLower": _sig(lower), "flipRateUpper": _sig(upper)}
    head = f"{k} of {n} predictions differ from version {serving_version} (flip rate {_pct(rate)}"
    if lower > t.max_flip_rate:
        msg = f"{head}, {conf} lower bound {_pct(lower)} > max {_pct_g(t.max_flip_rate)})"
        return _Check("PredictionsFlipped", msg), True, evidence
    return None, upper <= t.max_flip_rate, evidence


def _score_checks(serving: list[list[float]], candidate: list[list[float]], t: Thresholds
                  ) -> tuple[list[_Check], dict]:
    deltas = [max(abs(p - q) for p, q in zip(s, c, strict=True)) for s, c in zip(serving, candidate, strict=True)]
    mean, worst = sum(deltas) / len(deltas), max(deltas)
    psis = [psi([row[j] for row in serving], [row[j] for row in candidate]) for j in range(len(serving[0]))]
    column = max(range(len(psis)), key=psis.__getitem__)
    psi_class = 1 if len(psis) == 1 else column  # a single column is the positive class's score
    checks = []
    if mean > t.max_mean_score_delta:
        checks.append(_Check("ScoresShifted", f"scores moved by {_num(mean)} on average (largest {_num(worst)}) "
                                              f"> maxMeanScoreDelta {_num(t.max_mean_score_delta)}"))
    if psis[column] > t.max_score_psi:
        checks.append(_Check("ScoreDistributionShifted",
                             f"the score distribution of class {psi_class} shifted: PSI {_num(psis[column])} "
                             f"> maxScorePSI {_num(t.max_score_psi)}"))
    evidence = {"meanScoreDelta": _sig(mean), "maxScoreDelta": _sig(worst),
                "scorePSI": _sig(psis[column]), "scorePSIClass": psi_class}
    return checks, evidence


def _accuracy_check(s_top: list[int], c_top: list[int], labels: list[int | None], t: Thresholds
                    ) -> tuple[_Check | None, dict | None]:
    rows = [(s, c, y) for s, c, y in zip(s_top, c_top, labels, strict=True) if y is not None]
    if not rows:
        return None, None
    m = len(rows)
    s_acc = sum(s == y for s, _, y in rows) / m
    c_acc = sum(c == y for _, c, y in rows) / m
    b = sum(s == y != c for s, c, y in rows)
    c_only = sum(c == y != s for s, c, y in rows)
    p = mcnemar_p(b, c_only)
    checked = m >= t.min_samples
    evidence = {"serving": _sig(s_acc), "candidate": _sig(c_acc), "rows": m, "servingOnlyRight": b,
                "candidateOnlyRight": c_only, "p": _sig(p), "checked": checked}
    drop = s_acc - c_acc
    if checked and drop > t.max_accuracy_drop and p < 1 - t.confidence:
        return _Check("AccuracyDropped",
                      f"accuracy on {m} labelled rows fell from {_pct(s_acc)} to {_pct(c_acc)} "
                      f"(drop {_pct(drop)} > maxAccuracyDrop {_pct_g(t.max_accuracy_drop)}; {b} rows only the "
                      f"serving version got right, {c_only} only the candidate, McNemar p {p:.2g})"), evidence
    return None, evidence


def _validate_rows(serving, candidate, labels) -> tuple[int | None, int | None]:
    if len(serving) != len(candidate):
        raise ValueError(f"serving has {len(serving)} rows, candidate {len(candidate)}: rows must be aligned")
    if labels is not None and len(labels) != len(serving):
        raise ValueError(f"labels has {len(labels)} entries for {len(serving)} rows")
    return _width("serving", serving), _width("candidate", candidate)


def _validate_labels(labels: list[int | None] | None, width: int | None) -> None:
    classes = 2 if width == 1 else width
    for i, y in enumerate(labels or []):
        if y is not None and not (isinstance(y, int) and not isinstance(y, bool) and 0 <= y < classes):
            raise ValueError(f"labels[{i}] = {y!r} is not a class in 0..{classes - 1}")


def _failed(reason: str, message: str, evidence: dict) -> Verdict:
    return Verdict(FAIL, reason, message, {**evidence, "failed": [reason]})


def compare(serving: list[list[float]], candidate: list[list[float]], labels: list[int | None] | None,
            thresholds: Thresholds, *, serving_version: str, candidate_version: str,
            sources: dict[str, int]) -> Verdict:
    """Judge the candidate's answers against the serving version's on the same replayed inputs.

    Any failed check fails the verdict (the first in order names it; all are listed in
    evidence.failed). A flip rate whose confidence bounds straddle the maximum leaves it
    Inconclusive: the rows so far cannot tell a good candidate from a bad one."""
    t = thresholds
    s_width, c_width = _validate_rows(serving, candidate, labels)
    base = {"rows": len(serving), "sources": dict(sources), "servingVersion": serving_version,
            "candidateVersion": candidate_version, "thresholds": t.evidence()}
    if s_width is not None and s_width != c_width:
        return _failed("OutputShapeChanged",
                       f"Version {candidate_version} answers {c_width} scores per input, version {serving_version} "
                       f"answers {s_width}: their predictions cannot be compared.", base)
    _validate_labels(labels, s_width)
    bad = sum(not _finite_row(row) for row in candidate)
    if bad:
        return _failed("NonFiniteScores",
                       f"Version {candidate_version} answered NaN or infinite scores for {bad} of "
                       f"{len(candidate)} replayed inputs.", {**base, "nonFiniteRows": bad})
    keep = [i for i, row in enumerate(serving) if _finite_row(row)]
    if len(keep) < len(serving):  # the serving version's own bad answers say nothing of the candidate
        base["servingNonFiniteRows"] = len(serving) - len(keep)
        serving, candidate = [serving[i] for i in keep], [candidate[i] for i in keep]
        labels = [labels[i] for i in keep] if labels is not None else None
    base["rows"] = n = len(serving)
    if n < t.min_samples:
        return Verdict(INCONCLUSIVE, "TooFewSamples",
                       f"Only {n} inputs were replayed to version {candidate_version} and version {serving_version}, "
                       f"fewer than minSamples {t.min_samples}: let traffic reach version {serving_version} "
                       f"or log an evaluation set with the model.", {**base, "failed": []})
    return _judge(serving, candidate, labels, t, base, serving_version, candidate_version)


def _judge(serving, candidate, labels, t: Thresholds, base: dict, serving_version: str,
           candidate_version: str) -> Verdict:
    n = len(serving)
    s_top, c_top = top1(serving), top1(candidate)
    classes = 2 if len(serving[0]) == 1 else len(serving[0])
    k = sum(s != c for s, c in zip(s_top, c_top, strict=True))
    flip, flip_decided, flip_evidence = _flip_check(k, n, t, serving_version)
    score_failures, score_evidence = _score_checks(serving, candidate, t)
    accuracy, accuracy_evidence = _accuracy_check(s_top, c_top, labels or [None] * n, t)
    failures = [f for f in (flip, *score_failures, accuracy) if f is not None]
    evidence = {**base, **flip_evidence, **score_evidence, "classes": classes,
                "flipMatrix": flip_matrix(s_top, c_top, classes)}
    if accuracy_evidence is not None:
        evidence["accuracy"] = accuracy_evidence
    evidence["failed"] = [f.reason for f in failures]
    if failures:
        first = failures[0]
        more = f" Also failed: {', '.join(f.reason for f in failures[1:])}." if len(failures) > 1 else ""
        return Verdict(FAIL, first.reason, f"Version {candidate_version}: {first.message}.{more}", evidence)
    rate, lower, upper = k / n, flip_evidence["flipRateLower"], flip_evidence["flipRateUpper"]
    conf = _pct_g(t.confidence)
    if not flip_decided:
        return Verdict(INCONCLUSIVE, "FlipRateUndecided",
                       f"{k} of {n} predictions of version {candidate_version} differ from version {serving_version} "
                       f"(flip rate {_pct(rate)}); its {conf} bounds {_pct(lower)} to {_pct(upper)} straddle "
                       f"max {_pct_g(t.max_flip_rate)}, so more replayed rows would decide.", evidence)
    return Verdict(PASS, "ReplayAgreed",
                   f"Version {candidate_version} agreed with version {serving_version} on {n} replayed inputs: "
                   f"{k} predictions differ ({conf} upper bound {_pct(upper)} <= max {_pct_g(t.max_flip_rate)}), "
                   f"mean score change {_num(score_evidence['meanScoreDelta'])} <= {_num(t.max_mean_score_delta)}, "
                   f"score PSI {_num(score_evidence['scorePSI'])} <= {_num(t.max_score_psi)}.", evidence)


# ---------------------------------------------------------------- registry metrics


def lower_is_better(metric: str) -> bool:
    """Losses and error rates fall as a model improves; every other metric (accuracy, F1, AUC) rises."""
    name = metric.lower()
    return "loss" in name or "error" in name


def _has(metrics: dict[str, float], metric: str) -> bool:
    value = metrics.get(metric)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def registry_gate(candidate: dict[str, float], serving: dict[str, float], metric: str, max_regression: float,
                  *, candidate_version: str, serving_version: str) -> Verdict:
    """Compare one metric logged with each version in the registry: the candidate may be worse by at
    most `max_regression` (absolute, in the metric's own units)."""
    if not (isinstance(max_regression, (int, float)) and math.isfinite(max_regression) and max_regression >= 0):
        raise ValueError(f"max_regression must be a finite number >= 0, got {max_regression!r}")
    evidence: dict[str, Any] = {"metric": metric, "candidateVersion": candidate_version,
                                "servingVersion": serving_version, "maxRegression": max_regression,
                                "direction": "lowerIsBetter" if lower_is_better(metric) else "higherIsBetter"}
    missing = [(side, version) for side, version, metrics in
               (("candidate", candidate_version, candidate), ("serving", serving_version, serving))
               if not _has(metrics, metric)]
    if missing:
        lacking = " and ".join(f"version {version}" for _, version in missing)
        have = "; ".join(f"version {v} has {_names(m)}" for v, m in
                         ((candidate_version, candidate), (serving_version, serving)))
        return Verdict(INCONCLUSIVE, "RegistryMetricMissing",
                       f"Metric {metric} is missing or not a finite number for {lacking}: {have}.",
                       {**evidence, "missing": [side for side, _ in missing],
                        "candidateMetrics": sorted(candidate)[:8], "servingMetrics": sorted(serving)[:8]})
    c, s = float(candidate[metric]), float(serving[metric])
    regression = c - s if lower_is_better(metric) else s - c
    evidence.update(candidate=_sig(c), serving=_sig(s), regression=_sig(regression))
    head = f"{metric} {_num(c)} for version {candidate_version} vs {_num(s)} for version {serving_version}"
    if regression > max_regression:
        return Verdict(FAIL, "RegistryMetricRegressed",
                       f"{head}: worse by {_num(regression)} > maxRegression {_num(max_regression)}", evidence)
    change = f"worse by {_num(regression)}" if regression > 0 else f"better by {_num(-regression)}"
    if regression == 0:
        change = "equal"
    return Verdict(PASS, "RegistryMetricHeld", f"{head}: {change}, within maxRegression {_num(max_regression)}",
                   evidence)


def _names(metrics: dict[str, float]) -> str:
    names = sorted(metrics)
    if not names:
        return "no metrics"
    return ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")


# ---------------------------------------------------------------- action


def decide(verdict: Verdict, on_inconclusive: str) -> str:
    """What the rollout does next: a Pass proceeds, a Fail is rejected, and an Inconclusive verdict
    does what the user chose (spec'd as proceed, hold or reject)."""
    if on_inconclusive not in ACTIONS:
        raise ValueError(f"onInconclusive must be one of {', '.join(ACTIONS)}, got {on_inconclusive!r}")
    if verdict.outcome == PASS:
        return "proceed"
    if verdict.outcome == FAIL:
        return "reject"
    if verdict.outcome == INCONCLUSIVE:
        return on_inconclusive
    raise ValueError(f"verdict outcome must be Pass, Fail or Inconclusive, got {verdict.outcome!r}")
