"""The input sample: a bounded, sampled record of recent production inputs, which the operator replays
against a candidate version before any user traffic reaches it.

Rows, not requests: every input of a recorded request is split along its first (batch) axis and row i of
each input is kept together, so the sample can be re-batched at will. A ring (of one block per request,
one copy per input: recording costs microseconds whatever the rows) evicts the oldest rows past
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
from typing import Any

import numpy as np

from modelops_inference.protocol import TensorSpec
from modelops_inference.tensors import to_json

FORMAT = "modelops.replay/v1"
_BYTES_PREFIX = 4  # each BYTES element's length prefix in the binary form


class _Block:
    """The rows one request gave, one array per declared input (row i of each from the same request row).
    A block, not a row per entry: one copy per input per request keeps recording cheap."""

    __slots__ = ("values", "rows", "nbytes")

    def __init__(self, values: tuple[np.ndarray, ...], nbytes: int):
        self.values = values
        self.rows = values[0].shape[0]
        self.nbytes = nbytes

    @property
    def row_shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(v.shape[1:] for v in self.values)

    def row_bytes(self) -> np.ndarray:
        """Each row's bytes (computed only to evict part of a block)."""
        if all(v.dtype.kind != "O" for v in self.values):
            return np.full(self.rows, self.nbytes // self.rows, np.int64)
        return np.array([sum(_nbytes(v[i, ...]) for v in self.values) for i in range(self.rows)], np.int64)

    def without_first(self, rows: int, freed: int) -> _Block:
        """The block minus its first `rows` rows (`freed` bytes), copied so the evicted rows' memory goes."""
        return _Block(tuple(v[rows:].copy() for v in self.values), self.nbytes - freed)


def _nbytes(array: np.ndarray) -> int:
    if array.dtype.kind == "O":
        return sum(_BYTES_PREFIX + len(str(v).encode("utf-8")) for v in array.ravel().tolist())
    return array.nbytes


def _fits(shape: tuple[int, ...], row_shape: tuple[int, ...], free: set[int]) -> bool:
    """Whether a row shape matches the declared one in every dimension not in `free` (same rank)."""
    return all(got == want for i, (got, want) in enumerate(zip(shape, row_shape, strict=True)) if i not in free)


def _rows_to_free(block: _Block, rows: int, nbytes: int) -> tuple[int, int]:
    """The fewest first rows of `block` that free at least `rows` rows and `nbytes` bytes, and their bytes."""
    cumulative = np.cumsum(block.row_bytes())
    k = max(rows, int(np.searchsorted(cumulative, nbytes)) + 1 if nbytes > 0 else 0)
    return k, int(cumulative[k - 1]) if k else 0


class InputSample:
    """The ring of recent input rows of one model, recording a `rate` fraction of requests."""

    def __init__(self, specs: list[TensorSpec], max_rows: int, max_bytes: int, rate: float,
                 chance=random.random):
        self.specs = list(specs)
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.rate = rate
        self.observed = 0  # successful inference requests offered, recorded or not
        self.rows = 0
        self.nbytes = 0
        self._blocks: collections.deque[_Block] = collections.deque()
        self._chance = chance
        # Per declared input, what `_matching` checks, worked out once: (name, dtype, row shape, free dims).
        self._checks = [(spec.name, spec.dtype, spec.shape[1:], {i for i, d in enumerate(spec.shape[1:]) if d == -1})
                        for spec in self.specs if spec.shape]
        if len(self._checks) != len(self.specs):
            self._checks = []  # a scalar input has no rows: nothing of this model is recorded

    def __len__(self) -> int:
        return self.rows

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
        their first dimensions differ (rows that cannot be aligned). Plain loops: this runs per request."""
        arrays = []
        rows = -1
        for name, dtype, row_shape, free in self._checks:
            array = inputs.get(name)
            if array is None or array.dtype != dtype or array.ndim != len(row_shape) + 1:
                return None
            shape = array.shape
            if shape[1:] != row_shape and not _fits(shape[1:], row_shape, free):
                return None
            if rows != shape[0]:
                if rows != -1:
                    return None
                rows = shape[0]
            arrays.append(array)
        return arrays if rows > 0 else None

    def _record(self, arrays: list[np.ndarray]) -> None:
        first = max(0, arrays[0].shape[0] - self.max_rows)  # rows the ring would evict at once: never copied
        values = tuple([a[first:].copy() for a in arrays])
        nbytes = 0
        for v in values:
            nbytes += _nbytes(v) if v.dtype.kind == "O" else v.nbytes
        block = _Block(values, nbytes)
        if block.nbytes > self.max_bytes:  # the request alone is too big: keep its last rows that fit
            k, freed = _rows_to_free(block, 0, block.nbytes - self.max_bytes)
            if k >= block.rows:
                return
            block = block.without_first(k, freed)
        self._blocks.append(block)
        self.rows += block.rows
        self.nbytes += block.nbytes
        self._evict()

    def _evict(self) -> None:
        """Drops the oldest rows until both bounds hold: whole blocks, then the first rows of the oldest."""
        while self.rows > self.max_rows or self.nbytes > self.max_bytes:
            oldest = self._blocks[0]
            rows, nbytes = self.rows - self.max_rows, self.nbytes - self.max_bytes
            if rows >= oldest.rows or nbytes >= oldest.nbytes:
                self._blocks.popleft()
                self.rows -= oldest.rows
                self.nbytes -= oldest.nbytes
                continue
            k, freed = _rows_to_free(oldest, rows, nbytes)
            self._blocks[0] = oldest.without_first(k, freed)
            self.rows -= k
            self.nbytes -= freed

    def replay_set(self) -> dict[str, Any]:
        """The rows held, oldest first, as a replay set: per input one tensor of shape [N, ...row shape],
        data flattened row-major as in a v2 JSON body. With free dimensions besides the first, rows of
        other shapes cannot share a tensor: only those shaped like the newest row are given."""
        blocks = list(self._blocks)
        if blocks:
            newest = blocks[-1].row_shapes
            blocks = [b for b in blocks if b.row_shapes == newest]
        inputs = []
        for k, spec in enumerate(self.specs):
            if blocks:
                stacked = np.concatenate([b.values[k] for b in blocks])
            else:
                stacked = np.empty((0, *(max(d, 0) for d in spec.shape[1:])), dtype=spec.dtype)
            inputs.append({"name": spec.name, "datatype": spec.datatype, "shape": list(stacked.shape),
                           "data": to_json(stacked)})
        rows = sum(b.rows for b in blocks)
        return {"format": FORMAT, "inputs": inputs, "rows": rows, "observed": self.observed}
