import numpy as np

from modelops_training.parity import check, compare, parity_inputs, sample_like


def test_identical_outputs_pass_with_zero_error():
    out = [np.array([[0.2, 0.8]], dtype=np.float32)]
    result = compare(out, out, tolerance=1e-6, samples=1)
    assert result.passed and result.max_abs_error == 0.0 and result.top1_agreement == 1.0


def test_a_difference_beyond_the_tolerance_fails_and_reports_both_errors():
    result = compare([np.array([[0.5, 0.5]])], [np.array([[0.4, 0.6]])], tolerance=0.05, samples=1)
    assert not result.passed
    assert abs(result.max_abs_error - 0.1) < 1e-9
    assert abs(result.max_rel_error - 0.2) < 1e-9
    assert "tolerance 0.05" in result.describe()


def test_nan_in_the_same_place_counts_as_equal_but_one_sided_nan_fails():
    nan = np.array([[np.nan, 1.0]])
    assert compare([nan], [nan.copy()], 1e-6, 1).passed
    one_sided = compare([nan], [np.array([[0.0, 1.0]])], 1e-6, 1)
    assert not one_sided.passed and one_sided.max_abs_error == float("inf")


def test_shape_mismatch_fails():
    assert not compare([np.zeros((2, 2))], [np.zeros((2, 3))], 1.0, 2).passed


def test_sampled_inputs_look_like_the_example():
    example = np.random.default_rng(1).normal(10, 2, size=(5, 30)).astype(np.float32)
    sampled = sample_like(example, 50)
    assert sampled.shape == (50, 30) and sampled.dtype == np.float32
    assert np.all(sampled >= example.min(axis=0) - (np.ptp(example, axis=0) * 0.25 + 1e-3) - 1e-5)
    inputs = parity_inputs(example, 50)
    np.testing.assert_array_equal(inputs[:5], example)
    assert len(inputs) == 55


def test_check_batches_and_counts_every_input():
    x = np.random.default_rng(0).random((600, 3)).astype(np.float32)
    result = check(lambda a: [a * 2], lambda a: [a * 2 + 1e-7], x, tolerance=1e-5, batch=256)
    assert result.passed and result.samples == 600
