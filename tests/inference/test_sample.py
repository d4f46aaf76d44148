"""The input sample's ring, without a server: what is kept, the row and byte bounds, sampling, and the
replay-set encoding."""

from __future__ import annotations

import numpy as np
import pytest

from modelops_inference.protocol import TensorSpec, dumps
from modelops_inference.sample import FORMAT, InputSample

MLP = [TensorSpec("input", "FP32", (-1, 4))]
TWO = [TensorSpec("a", "FP32", (-1, 2)), TensorSpec("b", "INT64", (-1, 2))]


def rows(start: int, count: int, width: int = 4) -> np.ndarray:
    return np.arange(start * width, (start + count) * width, dtype=np.float32).reshape(count, width)


def held(sample: InputSample, name: str = "input") -> np.ndarray:
    replay = sample.replay_set()
    [tensor] = [t for t in replay["inputs"] if t["name"] == name]
    return np.asarray(tensor["data"]).reshape(tensor["shape"])


def test_every_row_of_a_request_is_kept_in_order_with_its_exact_values():
    sample = InputSample(MLP, max_rows=10, max_bytes=1 << 20, rate=1.0)
    sample.offer({"input": rows(0, 2)})
    sample.offer({"input": rows(2, 3)})
    np.testing.assert_array_equal(held(sample), rows(0, 5))
    replay = sample.replay_set()
    assert (replay["format"], replay["rows"], replay["observed"]) == (FORMAT, 5, 2)
    assert replay["inputs"][0]["datatype"] == "FP32" and replay["inputs"][0]["shape"] == [5, 4]


def test_the_row_bound_evicts_the_oldest_rows():
    sample = InputSample(MLP, max_rows=4, max_bytes=1 << 20, rate=1.0)
    for start in range(0, 10, 2):
        sample.offer({"input": rows(start, 2)})
    assert len(sample) == 4
    np.testing.assert_array_equal(held(sample), rows(6, 4))


def test_eviction_can_take_the_first_rows_of_a_request_and_keep_the_rest():
    sample = InputSample(MLP, max_rows=5, max_bytes=1 << 20, rate=1.0)
    for start in range(0, 9, 3):
        sample.offer({"input": rows(start, 3)})
    assert len(sample) == 5 and sample.nbytes == 5 * 16
    np.testing.assert_array_equal(held(sample), rows(4, 5))


def test_the_byte_bound_evicts_part_of_the_oldest_request():
    sample = InputSample(MLP, max_rows=100, max_bytes=5 * 16, rate=1.0)
    sample.offer({"input": rows(0, 4)})
    sample.offer({"input": rows(4, 3)})
    assert len(sample) == 5 and sample.nbytes == 80
    np.testing.assert_array_equal(held(sample), rows(2, 5))


def test_a_request_bigger_than_the_byte_bound_keeps_its_last_rows_that_fit():
    sample = InputSample(MLP, max_rows=100, max_bytes=40, rate=1.0)
    sample.offer({"input": rows(0, 1)})
    sample.offer({"input": rows(1, 5)})
    np.testing.assert_array_equal(held(sample), rows(4, 2))


def test_bytes_rows_are_evicted_by_their_own_sizes():
    specs = [TensorSpec("text", "BYTES", (-1,))]
    sample = InputSample(specs, max_rows=100, max_bytes=4 + 10 + 4 + 1 + 4 + 1, rate=1.0)
    sample.offer({"text": np.array(["a" * 10, "b", "c"], dtype=object)})
    sample.offer({"text": np.array(["d"], dtype=object)})  # frees the 14-byte first row only
    assert sample.replay_set()["inputs"][0]["data"] == ["b", "c", "d"] and sample.nbytes == 15


def test_a_request_of_no_rows_is_not_recorded():
    sample = InputSample(MLP, max_rows=10, max_bytes=1 << 20, rate=1.0)
    sample.offer({"input": rows(0, 0)})
    assert len(sample) == 0 and sample.replay_set()["observed"] == 1


def test_a_request_larger_than_the_ring_keeps_its_last_rows():
    sample = InputSample(MLP, max_rows=3, max_bytes=1 << 20, rate=1.0)
    sample.offer({"input": rows(0, 100)})
    np.testing.assert_array_equal(held(sample), rows(97, 3))


def test_the_byte_bound_evicts_the_oldest_rows():
    sample = InputSample(MLP, max_rows=100, max_bytes=3 * 16 + 8, rate=1.0)  # a row is 16 bytes: three fit
    for start in range(6):
        sample.offer({"input": rows(start, 1)})
    assert len(sample) == 3 and sample.nbytes == 48
    np.testing.assert_array_equal(held(sample), rows(3, 3))


def test_a_row_bigger_than_the_byte_bound_is_never_kept():
    sample = InputSample(MLP, max_rows=100, max_bytes=15, rate=1.0)
    sample.offer({"input": rows(0, 2)})
    assert len(sample) == 0 and sample.nbytes == 0 and sample.replay_set()["observed"] == 1


def test_bytes_elements_count_their_utf8_length_and_prefix():
    specs = [TensorSpec("text", "BYTES", (-1,))]
    sample = InputSample(specs, max_rows=10, max_bytes=1 << 20, rate=1.0)
    sample.offer({"text": np.array(["ab", "é"], dtype=object)})
    assert sample.nbytes == (4 + 2) + (4 + 2)
    assert sample.replay_set()["inputs"][0]["data"] == ["ab", "é"]


def test_rows_of_all_inputs_stay_aligned():
    sample = InputSample(TWO, max_rows=3, max_bytes=1 << 20, rate=1.0)
    for i in range(4):
        sample.offer({"b": np.full((1, 2), i, np.int64), "a": np.full((1, 2), i, np.float32)})
    np.testing.assert_array_equal(held(sample, "a")[:, 0], [1, 2, 3])
    np.testing.assert_array_equal(held(sample, "b")[:, 0], [1, 2, 3])


@pytest.mark.parametrize("inputs", [
    {"input": np.zeros((2, 5), np.float32)},  # a fixed dimension differs
    {"input": np.zeros((2, 4), np.float64)},  # another datatype
    {"input": np.zeros((2, 4, 1), np.float32)},  # another rank
    {"other": np.zeros((2, 4), np.float32)},  # not the declared input
], ids=["shape", "datatype", "rank", "name"])
def test_rows_that_do_not_fit_the_declared_inputs_are_skipped(inputs):
    sample = InputSample(MLP, max_rows=10, max_bytes=1 << 20, rate=1.0)
    sample.offer(inputs)
    assert len(sample) == 0 and sample.replay_set()["observed"] == 1


def test_inputs_with_different_row_counts_are_skipped():
    sample = InputSample(TWO, max_rows=10, max_bytes=1 << 20, rate=1.0)
    sample.offer({"a": np.zeros((2, 2), np.float32), "b": np.zeros((3, 2), np.int64)})
    assert len(sample) == 0


def test_rows_are_copies_not_views_of_the_request():
    sample = InputSample(MLP, max_rows=10, max_bytes=1 << 20, rate=1.0)
    request = rows(0, 1)
    sample.offer({"input": request})
    request[:] = -1
    np.testing.assert_array_equal(held(sample), rows(0, 1))


def test_the_rate_decides_which_requests_are_recorded_and_every_one_is_observed():
    draws = iter([0.1, 0.3, 0.24, 0.9])
    sample = InputSample(MLP, max_rows=10, max_bytes=1 << 20, rate=0.25, chance=lambda: next(draws))
    for start in range(4):
        sample.offer({"input": rows(start, 1)})
    np.testing.assert_array_equal(held(sample), rows(0, 1).tolist() + rows(2, 1).tolist())
    assert sample.replay_set()["observed"] == 4


def test_rate_zero_records_nothing():
    sample = InputSample(MLP, max_rows=10, max_bytes=1 << 20, rate=0.0)
    sample.offer({"input": rows(0, 1)})
    assert len(sample) == 0


def test_with_a_free_inner_dimension_only_rows_shaped_like_the_newest_are_given():
    specs = [TensorSpec("tokens", "INT64", (-1, -1))]
    sample = InputSample(specs, max_rows=10, max_bytes=1 << 20, rate=1.0)
    sample.offer({"tokens": np.ones((1, 3), np.int64)})
    sample.offer({"tokens": np.full((2, 5), 2, np.int64)})
    replay = sample.replay_set()
    assert replay["rows"] == 2 and replay["inputs"][0]["shape"] == [2, 5] and len(sample) == 3


def test_an_empty_sample_is_a_valid_replay_set():
    replay = InputSample(MLP, max_rows=10, max_bytes=100, rate=1.0).replay_set()
    assert replay["rows"] == 0 and replay["inputs"][0]["shape"] == [0, 4]
    assert dumps(replay).startswith(b'{"format":"modelops.replay/v1"')


def test_non_finite_floats_are_spelt_as_in_a_v2_body():
    sample = InputSample(MLP, max_rows=10, max_bytes=1 << 20, rate=1.0)
    sample.offer({"input": np.array([[np.nan, np.inf, -np.inf, 1]], np.float32)})
    assert list(sample.replay_set()["inputs"][0]["data"]) == ["NaN", "Infinity", "-Infinity", 1.0]
