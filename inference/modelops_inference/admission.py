"""Admission control: at most `limit` inference requests inside the server at once, across every front
end (HTTP now, gRPC beside it), so overload is answered at once with "come back later" instead of a
queue whose latency grows until every caller times out.

A request is admitted on arrival, before its body is read, and released when its answer has been sent;
one that finds the server full costs nothing more than the check. Thread-safe, so a front end running
in threads can share the same limit with the event loop's.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from modelops_inference.errors import Overloaded


class Admission:
    """Counts admitted requests against `limit` (0: no limit) and the rejections past it.

    `try_admit()` then `release()` (exactly once per admitted request), or `with admission.admitted():`,
    which raises `Overloaded` when full. `rejected` only grows; metrics read it at scrape time.
    """

    def __init__(self, limit: int):
        if limit < 0:
            raise ValueError(f"the admission limit must be 0 (none) or more, got {limit}")
        self.limit = limit
        self.in_flight = 0
        self.rejected = 0
        self._lock = threading.Lock()

    def try_admit(self) -> bool:
        """True (and counted in) when there is room; False (and counted as a rejection) when full."""
        with self._lock:
            if self.limit and self.in_flight >= self.limit:
                self.rejected += 1
                return False
            self.in_flight += 1
            return True

    def release(self) -> None:
        with self._lock:
            if self.in_flight <= 0:
                raise RuntimeError("Admission.release() without a matching try_admit()")
            self.in_flight -= 1

    @contextlib.contextmanager
    def admitted(self) -> Iterator[None]:
        if not self.try_admit():
            raise self.overloaded()
        try:
            yield
        finally:
            self.release()

    def overloaded(self) -> Overloaded:
        return Overloaded(f"server is at capacity ({self.limit} inference requests in progress, "
                          f"--max-queue-depth); retry after {Overloaded.retry_after_seconds} s")
