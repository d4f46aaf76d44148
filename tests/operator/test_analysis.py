import json
import math

import pytest
from scipy import stats

from modelops_operator.analysis import (
    Thresholds,
    Verdict,
    clopper_pearson,
    compare,
    decide,
    flip_matrix,
    mcnemar_p,
    psi,
    registry_gate,
    top1,
)

SOURCES = {"production": 256, "evaluation": 114}


def judge(serving, candidate, labels=None, **thresholds):
    return compare(serving, candidate, labels, Thresholds(**thresholds), serving_version="2",
                   candidate_version="3", sources=SOURCES)


def json_safe(evidence):
    return json.loads(json.dumps(evidence, allow_nan=False)) == evidence


def binary(scores):
    return [[1 - p, p] for p in scores]


# ---------------------------------------------------------------- Clopper-Pearson


@pytest.mark.parametrize("k, n", [(1, 10), (3, 10), (9, 10), (38, 114), (0, 50), (50, 50), (5, 2000),
                                  (1000, 2000), (1, 1), (0, 1)])
@pytest.mark.parametrize("confidence", [0.95, 0.99, 0.8])
def test_clopper_pearson_bounds_are_the_one_sided_beta_quantiles(k, n, confidence):
    lower, upper = clopper_pearson(k, n, confidence)
    alpha = 1 - confidence
    assert lower == pytest.approx(stats.beta.ppf(alpha, k, n - k + 1) if k else 0.0, abs=1e-9)
    assert upper == pytest.approx(stats.beta.ppf(confidence, k + 1, n - k) if k < n else 1.0, abs=1e-9)


def test_clopper_pearson_bounds_for_no_or_all_successes_have_closed_forms():
    """P(X = 0) = (1 - p)^n = 0.05 and P(X = n) = p^n = 0.05, by hand."""
    assert clopper_pearson(0, 10) == (0.0, pytest.approx(1 - 0.05 ** (1 / 10), abs=1e-12))
    assert clopper_pearson(10, 10) == (pytest.approx(0.05 ** (1 / 10), abs=1e-12), 1.0)


def test_clopper_pearson_of_the_issue_example_bounds_the_rate_at_26_percent():
    lower, upper = clopper_pearson(38, 114)
    assert round(lower, 3) == 0.260 and lower < 38 / 114 < upper


def test_clopper_pearson_without_rows_knows_nothing():
    assert clopper_pearson(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("k, n, confidence", [(-1, 5, 0.95), (6, 5, 0.95), (1, 5, 1.0), (1, 5, 0.0), (1.5, 5, 0.9)])
def test_clopper_pearson_rejects_impossible_counts_and_confidences(k, n, confidence):
    with pytest.raises(ValueError):
        clopper_pearson(k, n, confidence)


# ---------------------------------------------------------------- McNemar


@pytest.mark.parametrize("b, c", [(1, 0), (5, 5), (15, 0), (0, 15), (7, 2), (30, 45), (300, 250)])
def test_mcnemar_p_is_the_exact_binomial_upper_tail(b, c):
    expected = stats.binomtest(b, b + c, 0.5, alternative="greater").pvalue
    assert mcnemar_p(b, c) == pytest.approx(expected, rel=1e-9)


def test_mcnemar_p_by_hand():
    assert mcnemar_p(3, 0) == 1 / 8
    assert mcnemar_p(3, 1) == 5 / 16
    assert mcnemar_p(0, 4) == 1.0


def test_mcnemar_p_without_discordant_rows_is_one():
    assert mcnemar_p(0, 0) == 1.0


def test_mcnemar_p_rejects_negative_counts():
    with pytest.raises(ValueError):
        mcnemar_p(-1, 2)


# ---------------------------------------------------------------- PSI


def test_psi_of_identical_distributions_is_zero():
    scores = [i / 37 for i in range(38)]
    assert psi(scores, scores) == 0.0


def test_psi_by_hand_for_two_occupied_bins():
    """expected (0.5, 0.5), actual (0.75, 0.25): 0.25 ln 1.5 - 0.25 ln 0.5 = 0.25 ln 3."""
    assert psi([0.05, 0.05, 0.95, 0.95], [0.05, 0.05, 0.05, 0.95]) == pytest.approx(0.25 * math.log(3))


def test_psi_counts_empty_bins_as_eps():
    """All mass moves from the first bin to the last: two terms of (1 - eps) ln(1 / eps)."""
    eps = 1e-4
    assert psi([0.0] * 5, [1.0] * 5, eps=eps) == pytest.approx(2 * (1 - eps) * math.log(1 / eps))


def test_psi_clamps_scores_outside_the_unit_interval_into_the_end_bins():
    assert psi([0.0, 1.0], [-0.3, 1.7]) == 0.0
    assert psi([0.99], [1.0]) == 0.0  # 1.0 belongs to the last bin, not an eleventh


def test_psi_matches_a_numpy_histogram_reference():
    np = pytest.importorskip("numpy")
    expected = [((i * 7919) % 1000) / 1000 + 0.0005 for i in range(500)]  # off the bin edges, where
    # numpy's linspace edges (0.6000000000000001) and int(10 x) may round a value differently
    actual = [min(1.0, x * 1.3) for x in expected]
    e = np.histogram(expected, bins=10, range=(0, 1))[0] / 500
    a = np.histogram(actual, bins=10, range=(0, 1))[0] / 500
    e, a = np.where(e == 0, 1e-4, e), np.where(a == 0, 1e-4, a)
    assert psi(expected, actual) == pytest.approx(float(np.sum((a - e) * np.log(a / e))))


@pytest.mark.parametrize("expected, actual", [([], [0.5]), ([0.5], [float("nan")])])
def test_psi_rejects_empty_or_non_finite_inputs(expected, actual):
    with pytest.raises(ValueError):
        psi(expected, actual)


# ---------------------------------------------------------------- top-1 and flips


def test_top1_takes_the_first_argmax():
    assert top1([[0.1, 0.7, 0.2], [0.5, 0.5, 0.0], [0.0, 0.2, 0.8]]) == [1, 0, 2]


def test_top1_of_a_single_column_thresholds_at_one_half():
    assert top1([[0.2], [0.5], [0.51], [0.49]]) == [0, 1, 1, 0]


def test_flip_matrix_counts_serving_rows_against_candidate_columns():
    assert flip_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3) == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


@pytest.mark.parametrize("s, c", [([0, 1], [0]), ([0, 3], [0, 1])])
def test_flip_matrix_rejects_misaligned_rows_and_unknown_classes(s, c):
    with pytest.raises(ValueError):
        flip_matrix(s, c, 3)


# ---------------------------------------------------------------- compare


def test_identical_answers_pass_with_json_safe_evidence():
    scores = binary([0.1 + 0.8 * i / 99 for i in range(100)])
    verdict = judge(scores, scores)
    assert (verdict.outcome, verdict.reason) == ("Pass", "ReplayAgreed")
    e = verdict.evidence
    assert e["rows"] == 100 and e["flips"] == 0 and e["flipRate"] == 0.0 and e["failed"] == []
    assert e["flipRateLower"] == 0.0 and e["flipRateUpper"] == pytest.approx(1 - 0.05 ** (1 / 100), rel=1e-3)
    assert e["meanScoreDelta"] == 0.0 and e["scorePSI"] == 0.0 and "accuracy" not in e
    assert e["sources"] == SOURCES and e["sources"] is not SOURCES
    assert e["thresholds"] == {"maxFlipRate": 0.1, "maxMeanScoreDelta": 0.1, "maxScorePSI": 1.0,
                               "maxAccuracyDrop": 0.03, "minSamples": 50, "confidence": 0.95}
    assert json_safe(e)
    assert "100 replayed inputs" in verdict.message and "<= max 10 %" in verdict.message


def test_fewer_rows_than_min_samples_is_inconclusive_and_says_how_to_get_more():
    scores = binary([0.3] * 12)
    verdict = judge(scores, scores)
    assert (verdict.outcome, verdict.reason) == ("Inconclusive", "TooFewSamples")
    assert "12" in verdict.message and "minSamples 50" in verdict.message
    assert "evaluation set" in verdict.message and "traffic" in verdict.message
    assert verdict.evidence["rows"] == 12 and json_safe(verdict.evidence)


def test_a_flip_rate_whose_lower_bound_exceeds_the_maximum_fails():
    serving = binary([0.2] * 114)
    candidate = binary([0.8] * 38 + [0.2] * 76)
    verdict = judge(serving, candidate, max_mean_score_delta=1.0, max_score_psi=100.0)
    assert (verdict.outcome, verdict.reason) == ("Fail", "PredictionsFlipped")
    assert "38 of 114 predictions differ from version 2" in verdict.message
    assert "flip rate 33.3 %, 95 % lower bound 26.0 % > max 10 %" in verdict.message
    assert verdict.evidence["flipMatrix"] == [[76, 38], [0, 0]]
    assert verdict.evidence["failed"] == ["PredictionsFlipped"]


def test_a_flip_rate_whose_bounds_straddle_the_maximum_is_undecided():
    """7 of 100: bounds about 3.3 % to 12.8 % around max 10 %."""
    serving = binary([0.45] * 100)
    candidate = binary([0.55] * 7 + [0.45] * 93)
    verdict = judge(serving, candidate, max_score_psi=10.0)  # 7 % of one bin's mass moving is PSI 0.46
    assert (verdict.outcome, verdict.reason) == ("Inconclusive", "FlipRateUndecided")
    assert verdict.evidence["flipRateLower"] < 0.1 < verdict.evidence["flipRateUpper"]
    assert "more replayed rows would decide" in verdict.message and verdict.evidence["failed"] == []


def test_a_flip_rate_above_the_maximum_that_chance_could_explain_is_undecided_not_failed():
    """12 of 100 is above 10 %, but its lower bound (about 7 %) is not."""
    serving = binary([0.45] * 100)
    candidate = binary([0.55] * 12 + [0.45] * 88)
    verdict = judge(serving, candidate, max_score_psi=10.0)
    assert verdict.evidence["flipRate"] > 0.1 > verdict.evidence["flipRateLower"]
    assert (verdict.outcome, verdict.reason) == ("Inconclusive", "FlipRateUndecided")


def test_the_same_flip_rate_on_enough_rows_passes():
    serving = binary([0.45] * 1000)
    candidate = binary([0.55] * 50 + [0.45] * 950)
    verdict = judge(serving, candidate, max_score_psi=10.0)
    assert (verdict.outcome, verdict.reason) == ("Pass", "ReplayAgreed")


def test_moved_scores_fail_even_when_every_prediction_agrees_and_every_failure_is_listed():
    serving, candidate = binary([0.1] * 60), binary([0.3] * 60)
    verdict = judge(serving, candidate)
    assert (verdict.outcome, verdict.reason) == ("Fail", "ScoresShifted")
    assert verdict.evidence["flips"] == 0
    assert verdict.evidence["meanScoreDelta"] == 0.2 and verdict.evidence["maxScoreDelta"] == 0.2
    assert verdict.evidence["failed"] == ["ScoresShifted", "ScoreDistributionShifted"]
    assert "0.2" in verdict.message and "maxMeanScoreDelta 0.1" in verdict.message
    assert "ScoreDistributionShifted" in verdict.message


def test_a_shifted_score_distribution_fails_and_names_its_class():
    """Class 1 crosses the 0.7 bin edge while moving only 0.02; classes 0 and 2 stay in their bins."""
    serving = [[0.16, 0.69, 0.15]] * 60
    candidate = [[0.14, 0.71, 0.15]] * 60
    verdict = judge(serving, candidate)
    assert (verdict.outcome, verdict.reason) == ("Fail", "ScoreDistributionShifted")
    assert verdict.evidence["scorePSIClass"] == 1 and verdict.evidence["failed"] == ["ScoreDistributionShifted"]
    assert verdict.evidence["scorePSI"] == pytest.approx(2 * (1 - 1e-4) * math.log(1 / 1e-4), rel=1e-3)
    assert "class 1" in verdict.message and "maxScorePSI 1" in verdict.message


def test_a_significant_accuracy_drop_fails_with_both_accuracies_and_the_mcnemar_counts():
    labels = [0] * 200
    serving = binary([0.45] * 200)
    candidate = binary([0.55] * 15 + [0.45] * 185)
    verdict = judge(serving, candidate, labels, max_score_psi=10.0)
    assert (verdict.outcome, verdict.reason) == ("Fail", "AccuracyDropped")
    accuracy = verdict.evidence["accuracy"]
    assert accuracy == {"serving": 1.0, "candidate": 0.925, "rows": 200, "servingOnlyRight": 15,
                        "candidateOnlyRight": 0, "p": pytest.approx(2 ** -15, rel=1e-3), "checked": True}
    assert "100.0 %" in verdict.message and "92.5 %" in verdict.message and "maxAccuracyDrop 3 %" in verdict.message


def test_an_accuracy_drop_chance_could_explain_does_not_fail():
    """4 % lower on 50 rows, but 3 against 1 discordant rows: McNemar p = 5/16."""
    labels = [0] * 50
    serving = binary([0.8] + [0.45] * 49)
    candidate = binary([0.45] + [0.55] * 3 + [0.45] * 46)
    verdict = judge(serving, candidate, labels, max_flip_rate=0.5, max_score_psi=10.0)
    assert verdict.evidence["accuracy"]["p"] == 0.3125
    assert verdict.outcome == "Pass" and "AccuracyDropped" not in verdict.evidence["failed"]


def test_accuracy_is_reported_but_not_judged_on_fewer_labelled_rows_than_min_samples():
    labels = [0] * 20 + [None] * 180
    serving = binary([0.45] * 200)
    candidate = binary([0.55] * 15 + [0.45] * 185)
    verdict = judge(serving, candidate, labels, max_score_psi=10.0)
    assert verdict.evidence["accuracy"]["rows"] == 20 and verdict.evidence["accuracy"]["checked"] is False
    assert verdict.reason == "FlipRateUndecided"


def test_non_finite_candidate_scores_fail_first_even_on_few_rows():
    serving = binary([0.3] * 10)
    candidate = binary([0.3] * 8) + [[float("nan"), 0.5], [0.5, float("inf")]]
    verdict = judge(serving, candidate)
    assert (verdict.outcome, verdict.reason) == ("Fail", "NonFiniteScores")
    assert verdict.evidence["nonFiniteRows"] == 2 and "2 of 10" in verdict.message
    assert json_safe(verdict.evidence)


def test_rows_the_serving_version_answered_non_finitely_are_left_out_and_counted():
    serving = binary([0.3] * 60) + [[float("nan"), 0.1]]
    candidate = binary([0.3] * 61)
    verdict = judge(serving, candidate)
    assert verdict.outcome == "Pass" and verdict.evidence["rows"] == 60
    assert verdict.evidence["servingNonFiniteRows"] == 1 and json_safe(verdict.evidence)


def test_a_candidate_with_a_different_number_of_outputs_fails():
    verdict = judge(binary([0.3] * 60), [[0.3, 0.3, 0.4]] * 60)
    assert (verdict.outcome, verdict.reason) == ("Fail", "OutputShapeChanged")


def test_single_column_outputs_are_the_positive_class_of_two():
    serving = [[0.4]] * 30 + [[0.6]] * 30
    candidate = [[0.4]] * 30 + [[0.6]] * 30
    verdict = judge(serving, candidate, [0] * 30 + [1] * 30)
    assert verdict.outcome == "Pass" and verdict.evidence["classes"] == 2
    assert verdict.evidence["flipMatrix"] == [[30, 0], [0, 30]] and verdict.evidence["accuracy"]["serving"] == 1.0


def test_evidence_floats_carry_four_significant_digits():
    serving = binary([0.45] * 300)
    candidate = binary([0.55] * 7 + [0.45] * 293)
    e = judge(serving, candidate, max_score_psi=10.0).evidence
    assert e["flipRate"] == 0.02333
    for key in ("flipRateLower", "flipRateUpper", "meanScoreDelta", "scorePSI"):
        assert float(f"{e[key]:.4g}") == e[key]


@pytest.mark.parametrize("serving, candidate, labels", [
    ([[0.5, 0.5]], [], None),
    ([[0.5, 0.5]], [[0.5, 0.5]], [0, 1]),
    ([[0.5, 0.5], [1.0]], [[0.5, 0.5], [0.5, 0.5]], None),
])
def test_misaligned_or_ragged_rows_are_a_caller_error(serving, candidate, labels):
    with pytest.raises(ValueError):
        judge(serving, candidate, labels)


@pytest.mark.parametrize("rows", [60, 5])
def test_a_label_outside_the_classes_is_a_caller_error_however_few_rows(rows):
    scores = binary([0.3] * rows)
    with pytest.raises(ValueError, match=r"labels\[3\]"):
        judge(scores, scores, [0, 0, 0, 2] + [0] * (rows - 4))


@pytest.mark.parametrize("field, value", [("max_flip_rate", -0.1), ("max_score_psi", float("inf")),
                                          ("min_samples", 0), ("confidence", 1.0)])
def test_thresholds_reject_values_that_cannot_judge(field, value):
    with pytest.raises(ValueError, match=field):
        Thresholds(**{field: value})


# ---------------------------------------------------------------- registry gate


def test_a_regressed_registry_metric_fails_with_both_numbers():
    verdict = registry_gate({"test_f1": 0.612}, {"test_f1": 0.971}, "test_f1", 0.02,
                            candidate_version="3", serving_version="2")
    assert (verdict.outcome, verdict.reason) == ("Fail", "RegistryMetricRegressed")
    assert verdict.message == "test_f1 0.612 for version 3 vs 0.971 for version 2: worse by 0.359 > maxRegression 0.02"
    assert verdict.evidence["direction"] == "higherIsBetter" and json_safe(verdict.evidence)


def test_a_metric_within_the_allowed_regression_holds():
    verdict = registry_gate({"test_f1": 0.96}, {"test_f1": 0.971}, "test_f1", 0.02,
                            candidate_version="3", serving_version="2")
    assert (verdict.outcome, verdict.reason) == ("Pass", "RegistryMetricHeld")
    assert "worse by 0.011" in verdict.message


@pytest.mark.parametrize("metric", ["val_loss", "test_error_rate", "LogLoss"])
def test_losses_and_errors_are_lower_is_better(metric):
    worse = registry_gate({metric: 0.30}, {metric: 0.25}, metric, 0.02, candidate_version="3", serving_version="2")
    better = registry_gate({metric: 0.20}, {metric: 0.25}, metric, 0.02, candidate_version="3", serving_version="2")
    assert (worse.outcome, better.outcome) == ("Fail", "Pass")
    assert worse.evidence["direction"] == "lowerIsBetter" and "better by 0.05" in better.message


def test_a_metric_missing_on_one_side_is_inconclusive_and_lists_what_each_side_has():
    candidate = {f"m{i}": 0.5 for i in range(10)}
    verdict = registry_gate(candidate, {"test_f1": 0.9}, "test_f1", 0.02, candidate_version="3", serving_version="2")
    assert (verdict.outcome, verdict.reason) == ("Inconclusive", "RegistryMetricMissing")
    assert "for version 3:" in verdict.message and "version 2 has test_f1" in verdict.message
    assert "m0, m1, m2, m3, m4, m5, m6, m7 and 2 more" in verdict.message
    assert verdict.evidence["missing"] == ["candidate"] and len(verdict.evidence["candidateMetrics"]) == 8


def test_a_non_finite_metric_counts_as_missing():
    verdict = registry_gate({"test_f1": 0.9}, {"test_f1": float("nan")}, "test_f1", 0.02,
                            candidate_version="3", serving_version="2")
    assert verdict.reason == "RegistryMetricMissing" and verdict.evidence["missing"] == ["serving"]
    assert json_safe(verdict.evidence)


# ---------------------------------------------------------------- decide


@pytest.mark.parametrize("outcome, on_inconclusive, action", [
    ("Pass", "reject", "proceed"), ("Fail", "proceed", "reject"),
    ("Inconclusive", "hold", "hold"), ("Inconclusive", "proceed", "proceed"), ("Inconclusive", "reject", "reject"),
])
def test_decide_maps_outcomes_to_actions(outcome, on_inconclusive, action):
    assert decide(Verdict(outcome, "R", "m", {}), on_inconclusive) == action


def test_decide_rejects_an_unknown_choice_or_outcome():
    with pytest.raises(ValueError, match="onInconclusive"):
        decide(Verdict("Pass", "R", "m", {}), "retry")
    with pytest.raises(ValueError):
        decide(Verdict("Maybe", "R", "m", {}), "hold")
