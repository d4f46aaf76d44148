"""Paired replay: the same inputs sent to a candidate pod and to a serving pod, answers side by side.

The inputs are the serving pods' own sample of recent production traffic (modelops-serve keeps it in
memory on REPLAY_PORT, behind a per-ModelDeployment token) and the labelled evaluation set logged
with the candidate's run (EVALUATION_ARTIFACT). Both come in one format, a "replay set": v2 input
tensors whose first axis is the row, plus optional labels. Pods are called at their IPs, so the
candidate answers before its readiness gate opens and no user request ever reaches it.

Pure list handling (no numpy: the operator image has none; a replay is a few hundred rows).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
from dataclasses import dataclass, field
from typing import Any

import httpx

from modelops_registry.client import first_line
from modelops_registry.reader import reader

from .manifests import HTTP_PORT, REPLAY_PORT

FORMAT = "modelops.replay/v1"
EVALUATION_ARTIFACT = "modelops/evaluation.json"
MAX_EVALUATION_ROWS = 5000
MAX_EVALUATION_BYTES = 8 * 1024 * 1024
CHUNK_ROWS = 64  # rows per request: well inside any server's request limits, few round trips
TIMEOUT_SECONDS = 10.0


class ReplayError(Exception):
    """A replay set or an answer the operator cannot use; the message says which and why."""


class ServingPodFailed(ReplayError):
    """The serving pod, not the candidate, did not answer: no evidence about the candidate."""


def token_for(key: bytes, uid: str) -> str:
    """The sample token of one ModelDeployment (by UID): derived, so the operator never reads it back."""
    return hmac.new(key, f"replay:{uid}".encode(), hashlib.sha256).hexdigest()


@dataclass
class ReplaySet:
    """Rows of v2 input tensors (`inputs`: name -> (datatype, row shape, flat rows)) and their labels."""

    inputs: dict[str, tuple[str, list[int], list[list[Any]]]] = field(default_factory=dict)
    labels: list[int | None] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.labels)

    def extend(self, other: ReplaySet) -> ReplaySet:
        """Rows of both; a tensor the two disagree on (name, datatype or row shape) is refused."""
        if not self.rows:
            return other
        if not other.rows:
            return self
        if {n: (d, s) for n, (d, s, _) in self.inputs.items()} != {n: (d, s) for n, (d, s, _) in other.inputs.items()}:
            raise ReplayError(f"the production sample's inputs {describe(self)} differ from the evaluation "
                              f"set's {describe(other)}")
        merged = {n: (d, s, rows + other.inputs[n][2]) for n, (d, s, rows) in self.inputs.items()}
        return ReplaySet(merged, self.labels + other.labels)

    def chunks(self, size: int = CHUNK_ROWS) -> list[dict[str, Any]]:
        """v2 request bodies of at most `size` rows each, in row order."""
        bodies = []
        for start in range(0, self.rows, size):
            stop = min(start + size, self.rows)
            bodies.append({"inputs": [
                {"name": n, "datatype": d, "shape": [stop - start, *s],
                 "data": [v for row in rows[start:stop] for v in row]}
                for n, (d, s, rows) in self.inputs.items()]})
        return bodies


def describe(rs: ReplaySet) -> str:
    return ", ".join(f"{n} {d}{s}" for n, (d, s, _) in rs.inputs.items()) or "none"


def parse(doc: Any, *, where: str, max_rows: int = MAX_EVALUATION_ROWS) -> ReplaySet:
    """A replay-set document as rows; ReplayError naming `where` and the problem otherwise."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ReplayError(f"{where} is not a {FORMAT} document (its format is "
                          f"{doc.get('format') if isinstance(doc, dict) else type(doc).__name__!r})")
    tensors = doc.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise ReplayError(f"{where} has no inputs")
    inputs: dict[str, tuple[str, list[int], list[list[Any]]]] = {}
    rows = None
    for t in tensors:
        try:
            name, datatype, shape, data = str(t["name"]), str(t["datatype"]), [int(d) for d in t["shape"]], t["data"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ReplayError(f"{where}: an input lacks name, datatype, shape or data ({exc})") from exc
        if not shape or not isinstance(data, list):
            raise ReplayError(f"{where}: input {name!r} needs a row axis and flat data")
        width = math.prod(shape[1:])
        if len(data) != shape[0] * width:
            raise ReplayError(f"{where}: input {name!r} has {len(data)} values, its shape {shape} needs "
                              f"{shape[0] * width}")
        if rows is not None and shape[0] != rows:
            raise ReplayError(f"{where}: inputs have different row counts ({rows} and {shape[0]})")
        rows = shape[0]
        inputs[name] = (datatype, shape[1:], [data[i * width:(i + 1) * width] for i in range(rows)])
    labels = doc.get("labels")
    if labels is None:
        labels = [None] * rows
    elif not isinstance(labels, list) or len(labels) != rows:
        raise ReplayError(f"{where}: labels must be a list of {rows} class indices")
    keep = min(rows, max_rows)
    return ReplaySet({n: (d, s, r[:keep]) for n, (d, s, r) in inputs.items()},
                     [None if v is None else int(v) for v in labels[:keep]])


def evaluation_set(tracking_uri: str | None, run_id: str | None) -> tuple[ReplaySet, str | None]:
    """The candidate run's evaluation set (blocking: run it in a thread), and why there is none."""
    if not run_id:
        return ReplaySet(), "the candidate version has no run to read an evaluation set from"
    try:
        raw = reader(tracking_uri).read_artifact(run_id, EVALUATION_ARTIFACT, MAX_EVALUATION_BYTES)
    except Exception as exc:  # noqa: BLE001 - MLflow said no or is unreachable: the sample may still decide
        return ReplaySet(), f"the evaluation set could not be read: {first_line(exc)}"
    if raw is None:
        return ReplaySet(), f"run {run_id} logged no {EVALUATION_ARTIFACT}"
    try:
        return parse(json.loads(raw), where=f"run {run_id}'s {EVALUATION_ARTIFACT}"), None
    except (ValueError, ReplayError) as exc:
        return ReplaySet(), str(exc)


async def production_sample(client: httpx.AsyncClient, pod_ip: str, model: str, token: str,
                            max_rows: int) -> tuple[ReplaySet, str | None]:
    """What a serving pod kept of its recent inputs, and why there is none."""
    url = f"http://{pod_ip}:{REPLAY_PORT}/v2/models/{model}/sample"
    try:
        resp = await client.get(url, headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        return ReplaySet(), f"the serving pod's input sample is unreachable ({type(exc).__name__})"
    if resp.status_code != 200:
        return ReplaySet(), f"the serving pod's input sample answered HTTP {resp.status_code}"
    try:
        return parse(resp.json(), where="the serving pod's input sample", max_rows=max_rows), None
    except (ValueError, ReplayError) as exc:
        return ReplaySet(), str(exc)


async def answers(client: httpx.AsyncClient, pod_ip: str, model: str, rs: ReplaySet, output: str | None
                  ) -> list[list[float]]:
    """The pod's scores for every row of `rs`: the named output (else the first), one list per row."""
    url = f"http://{pod_ip}:{HTTP_PORT}/v2/models/{model}/infer"
    scores: list[list[float]] = []
    for body in rs.chunks():
        try:
            resp = await client.post(url, json=body)
        except httpx.HTTPError as exc:
            raise ReplayError(f"pod {pod_ip} did not answer the replay: {type(exc).__name__}: {exc}") from exc
        if resp.status_code != 200:
            raise ReplayError(f"pod {pod_ip} answered the replay with HTTP {resp.status_code}: {resp.text[:300]}")
        scores += rows_of(resp.json(), output, expect=body["inputs"][0]["shape"][0])
    return scores


def rows_of(body: Any, output: str | None, expect: int) -> list[list[float]]:
    """One v2 answer's output as rows of floats (null, the server's spelling of NaN, as NaN)."""
    outputs = (body or {}).get("outputs") or []
    chosen = next((o for o in outputs if o.get("name") == output), outputs[0] if outputs else None)
    if chosen is None:
        raise ReplayError("the answer has no outputs")
    data, shape = chosen.get("data") or [], chosen.get("shape") or [len(chosen.get("data") or [])]
    width = math.prod(shape[1:]) if len(shape) > 1 else 1
    if shape[0] != expect or len(data) != expect * width:
        raise ReplayError(f"output {chosen.get('name')!r} has shape {shape} for {expect} rows")
    flat = [math.nan if v is None else float(v) for v in data]
    return [flat[i * width:(i + 1) * width] for i in range(expect)]


async def replay(candidate_ip: str, serving_ip: str, model: str, rs: ReplaySet, output: str | None
                 ) -> tuple[list[list[float]], list[list[float]]]:
    """(serving scores, candidate scores), row for row, both pods asked concurrently. ServingPodFailed
    when the serving pod did not answer (say it was replaced meanwhile), ReplayError when the candidate
    did not."""
    async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
        serving, candidate = await asyncio.gather(answers(client, serving_ip, model, rs, output),
                                                  answers(client, candidate_ip, model, rs, output),
                                                  return_exceptions=True)
    if isinstance(serving, BaseException):
        raise ServingPodFailed(str(serving)) from serving
    if isinstance(candidate, BaseException):
        raise candidate
    return serving, candidate
