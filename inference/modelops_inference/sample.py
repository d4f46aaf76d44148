"""The input sample: a bounded, sampled record of recent production inputs, which the operator replays
against a candidate version before any user traffic reaches it.

Rows, not requests: every input of a recorded request is split along its first (batch) axis and row i of
each input is kept together, so the sample can be re-batched at will. A ring evicts the oldest rows past
`max_rows` rows or `max_bytes` bytes (a tensor's raw size; BYTES elements their UTF-8 length plus the
4-byte prefix of the binary form). Only rows that fit the model's declared inputs (datatype, rank, every
fixed dimension) are kept, so what is replayed is what the model accepts; anything else is skipped
without a word. Rows are copies: a request's arrays may be views of its body, which must not outlive it.

The contents live in this process's memory only: never logged, never written anywhere, and counted by
one metric (rows held) that says nothing about them. All calls come from the event loop: no locks.
"""

from __future__ import annotations

import collections
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelops_inference.protocol import TensorSpec
from modelops_inference.tensors import to_json

FORMAT = "modelops.replay/v1"
_BYTES_PREFIX = 4  # each BYTES element's length prefix in the binary form


@dataclass(frozen=True)
class _Row:
    values: tuple[np.ndarray, ...]  # one per declared input, in declaration order
    nbytes: int

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(v.shape for v in self.values)


def _nbytes(array: np.ndarray) -> int:
    if array.dtype.kind == "O":
        return sum(_BYTES_PREFIX + len(str(v).encode("utf-8")) for v in array.ravel().tolist())
    return array.nbytes


class InputSample:
    """The ring of recent input rows of one model, recording a `rate` fraction of requests."""

    def __init__(self, specs: list[TensorSpec], max_rows: int, max_bytes: int, rate: float,
                 chance=random.random):
        self.specs = list(specs)
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.rate = rate
        self.observed = 0  # successful inference requests offered, recorded or not
        self.nbytes = 0
        self._rows: collections.deque[_Row] = collections.deque()
        self._chance = chance

    def __len__(self) -> int:
        return len(self._rows)

    def offer(self, inputs: dict[str, np.ndarray]) -> None:
        """Called once per successfully answered request: counts it, and records its rows with probability
        `rate`. The cost of a request not drawn is a counter and one random number."""
        self.observed += 1
        if self.rate <= 0 or (self.rate < 1 and self._chance() >= self.rate):
            return
        arrays = self._matching(inputs)
        if arrays is not None:
            self._record(arrays)

    def _matching(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray] | None:
        """The request's arrays in declaration order, or None when any does not fit its declared input or
        their first dimensions differ (rows that cannot be aligned)."""
        arrays = []
        for spec in self.specs:
            array = inputs.get(spec.name)
            if array is None or array.ndim != len(spec.shape) or array.ndim == 0 or array.dtype != spec.dtype:
                return None
            if any(want != -1 and got != want for got, want in zip(array.shape[1:], spec.shape[1:], strict=True)):
                return None
            arrays.append(array)
        if not arrays or len({a.shape[0] for a in arrays}) != 1:
            return None
        return arrays

    def _record(self, arrays: list[np.ndarray]) -> None:
        rows = arrays[0].shape[0]
        for i in range(max(0, rows - self.max_rows), rows):  # rows the ring would evict at once: never copied
            values = tuple(a[i, ...].copy() for a in arrays)  # `...`: a 0-d array, not a scalar, for 1-d inputs
            nbytes = sum(_nbytes(v) for v in values)
            if nbytes > self.max_bytes:
                continue  # a row bigger than the whole ring can never be kept
            self._rows.append(_Row(values, nbytes))
            self.nbytes += nbytes
            while len(self._rows) > self.max_rows or self.nbytes > self.max_bytes:
                self.nbytes -= self._rows.popleft().nbytes

    def replay_set(self) -> dict[str, Any]:
        """The rows held, oldest first, as a replay set: per input one tensor of shape [N, ...row shape],
        data flattened row-major as in a v2 JSON body. With free dimensions besides the first, rows of
        other shapes cannot share a tensor: only those shaped like the newest row are given."""
        rows = list(self._rows)
        if rows:
            newest = rows[-1].shapes
            rows = [r for r in rows if r.shapes == newest]
        inputs = []
        for k, spec in enumerate(self.specs):
            if rows:
                stacked = np.stack([r.values[k] for r in rows])
            else:
                stacked = np.empty((0, *(max(d, 0) for d in spec.shape[1:])), dtype=spec.dtype)
            inputs.append({"name": spec.name, "datatype": spec.datatype, "shape": list(stacked.shape),
                           "data": to_json(stacked)})
        return {"format": FORMAT, "inputs": inputs, "rows": len(rows), "observed": self.observed}
