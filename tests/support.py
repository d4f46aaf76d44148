"""Helpers shared by the test suites (plain functions, not fixtures): a free local port, and polling
until something holds."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any


def free_port() -> int:
    """A TCP port that no socket holds on any local address (so free on 127.0.0.1 too) right now."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def wait_until(what: str, predicate: Callable[[], Any], timeout: float = 240, interval: float = 1.0, *,
               ignore: tuple[type[BaseException], ...] = ()) -> Any:
    """Polls predicate every `interval` seconds until it returns something truthy, and returns that.
    An exception of a type in `ignore` counts as one more falsy try; any other propagates. After
    `timeout` seconds fails with an AssertionError naming `what`, the timeout and the last value seen."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except ignore as e:
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
