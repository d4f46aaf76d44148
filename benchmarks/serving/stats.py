"""Numbers from a measured window: percentiles, a run's summary, ratios. Pure functions."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default);
    NaN for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or not denominator > 0:
        return None
    return numerator / denominator


def summarise(latencies_s: Sequence[float], seconds: float, rows_per_request: int, *, rejected: int = 0,
              errors: int = 0, server_cpu_s: float | None = None, client_cpu_s: float | None = None) -> dict:
    """One run: admitted (200) requests' throughput and latency over a window of `seconds`, and CPU per
    admitted request. Rejections (503) and errors are counted, not timed."""
    ok = len(latencies_s)
    out = {
        "requests": ok,
        "rejected": rejected,
        "errors": errors,
        "seconds": round(seconds, 3),
        "req_per_s": round(ok / seconds, 1) if seconds > 0 else 0.0,
        "rows_per_s": round(ok * rows_per_request / seconds, 1) if seconds > 0 else 0.0,
        "p50_ms": _ms(percentile(latencies_s, 50)),
        "p99_ms": _ms(percentile(latencies_s, 99)),
    }
    if server_cpu_s is not None:
        out["server_cpu_us_per_req"] = round(server_cpu_s / ok * 1e6, 1) if ok else None
        out["server_cpu_util"] = round(server_cpu_s / seconds, 2) if seconds > 0 else None
    if client_cpu_s is not None:
        out["client_cpu_util"] = round(client_cpu_s / seconds, 2) if seconds > 0 else None
    return out


def _ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) else round(seconds * 1000, 3)
