"""Admission control: requests past the limit are refused at once and counted, every admitted request
is released exactly once, and threads share one limit."""

from __future__ import annotations

import threading

import pytest

from modelops_inference.admission import Admission
from modelops_inference.errors import Overloaded, status_code


def test_requests_past_the_limit_are_refused_and_counted_until_one_is_released():
    admission = Admission(2)
    assert admission.try_admit() and admission.try_admit()
    assert not admission.try_admit()
    assert not admission.try_admit()
    assert (admission.in_flight, admission.rejected) == (2, 2)
    admission.release()
    assert admission.try_admit()
    assert (admission.in_flight, admission.rejected) == (2, 2)


def test_a_limit_of_zero_admits_everything():
    admission = Admission(0)
    assert all(admission.try_admit() for _ in range(10_000))
    assert admission.rejected == 0 and admission.in_flight == 10_000


def test_the_context_manager_releases_on_error_and_raises_overloaded_when_full():
    admission = Admission(1)
    with pytest.raises(ValueError), admission.admitted():
        assert admission.in_flight == 1
        raise ValueError("the handler failed")
    assert admission.in_flight == 0
    with admission.admitted(), pytest.raises(Overloaded) as refused, admission.admitted():
        pass
    assert status_code(refused.value) == 503 and refused.value.retry_after_seconds == 1
    assert "at capacity (1 inference requests in progress, --max-queue-depth)" in str(refused.value)
    assert (admission.in_flight, admission.rejected) == (0, 1)


def test_releasing_more_than_was_admitted_is_a_bug_reported_loudly():
    with pytest.raises(RuntimeError, match="without a matching try_admit"):
        Admission(1).release()


def test_a_negative_limit_is_refused():
    with pytest.raises(ValueError, match="0 \\(none\\) or more, got -1"):
        Admission(-1)


def test_threads_share_one_limit_and_never_exceed_it():
    admission, limit, seen = Admission(3), 3, []
    start = threading.Barrier(8)

    def worker():
        start.wait()
        for _ in range(2000):
            if admission.try_admit():
                seen.append(admission.in_flight)
                admission.release()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert admission.in_flight == 0 and max(seen) <= limit
    assert len(seen) + admission.rejected == 8 * 2000
