"""Post-deploy smoke checks: real inference requests through the Service, compared with what the
exported model itself answered on the same inputs, so a rollout never depends on outside traffic."""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

import httpx

from modelops_registry import ExportRecord

from .spec import SmokeSpec


@dataclass(frozen=True)
class SmokeCase:
    request: dict[str, Any]
    expected: dict[str, list] | None  # output name -> flat expected values


@dataclass
class SmokeResult:
    total: int
    passed: int
    failures: list[str] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return self.passed / self.total if self.total else 0.0

    def ok(self, min_success_rate: float) -> bool:
        return self.total > 0 and self.success_rate >= min_success_rate

    def summary(self) -> str:
        head = f"{self.passed}/{self.total} smoke requests passed"
        return head if not self.failures else head + "; first failure: " + self.failures[0]

    def evidence(self) -> str:
        """The summary and the next two failures: what a rollback reports."""
        return self.summary() + "".join(f"\n{f}" for f in self.failures[1:3])


# Plain Python rather than numpy: these are a few dozen numbers per check, and the operator image
# stays free of numpy.
def _flat(values: Any) -> list[float]:
    """Nested lists (or a scalar) as one flat list of floats; null becomes NaN."""
    if isinstance(values, list | tuple):
        return [v for item in values for v in _flat(item)]
    return [math.nan if values is None else float(values)]


def _shape(values: Any) -> list[int]:
    """The shape of a nested list, read along its first elements."""
    if not isinstance(values, list | tuple):
        return []
    return [len(values), *(_shape(values[0]) if values else [])]


def _float32(values: list[float]) -> list[float]:
    """Rounded to float32, the precision the model's input tensor has."""
    return array("f", values).tolist()


def cases_from_export(record: ExportRecord) -> list[SmokeCase]:
    """One v2 request per row of the model's logged input example, expecting the ONNX outputs."""
    example = record.input_example
    first_input = record.inputs[0]
    outputs = record.example_outputs
    if not isinstance(outputs, dict):  # a bare array means the single output
        outputs = {record.outputs[0].name: outputs}
    cases = []
    for row in range(len(example)):
        sample = [example[row]]
        cases.append(
            SmokeCase(
                request={
                    "id": f"smoke-{row}",
                    "inputs": [{
                        "name": first_input.name,
                        "datatype": first_input.datatype or "FP32",
                        "shape": _shape(sample),
                        "data": _float32(_flat(sample)),
                    }],
                },
                expected={name: _flat(vals[row]) for name, vals in outputs.items()},
            )
        )
    return cases


def cases_from_spec(smoke: SmokeSpec) -> list[SmokeCase]:
    cases = []
    for i, request in enumerate(smoke.requests):
        expected = None
        if i < len(smoke.expected_outputs):
            expected = {o["name"]: _flat(o["data"]) for o in smoke.expected_outputs[i].get("outputs", [])}
        cases.append(SmokeCase(request=request, expected=expected))
    return cases


def check_response(case: SmokeCase, status_code: int, body: Any, tolerance: float) -> str | None:
    """None when the answer is right, else what was wrong (the evidence a rollback reports)."""
    if status_code != 200:
        return f"HTTP {status_code}: {str(body)[:300]}"
    outputs = {o.get("name"): o.get("data") for o in (body or {}).get("outputs", [])}
    if not outputs:
        return f"no outputs in response: {str(body)[:300]}"
    for name, data in outputs.items():
        values = _flat(data)
        if any(not math.isfinite(v) for v in values):
            return f"output {name!r} is not finite: {values[:8]}"
    for name, want in (case.expected or {}).items():
        if name not in outputs:
            return f"output {name!r} missing; got {sorted(outputs)}"
        got = _flat(outputs[name])
        if len(got) != len(want):
            return f"output {name!r} has {len(got)} values, expected {len(want)}"
        diff = max((abs(a - b) for a, b in zip(got, want, strict=True)), default=0.0)
        if diff > tolerance:
            return f"output {name!r} differs by {diff:.3g} > tolerance {tolerance:g}: got {got[:6]}, want {want[:6]}"
    return None


def answered_by(body: Any) -> str | None:
    """The model version that produced a response (modelops-serve reports it in every answer)."""
    return str(body["model_version"]) if isinstance(body, dict) and body.get("model_version") is not None else None


async def run_smoke(base_url: str, model_name: str, cases: list[SmokeCase], smoke: SmokeSpec,
                    version: str, settle_seconds: float = 30.0, retry_interval: float = 0.5) -> SmokeResult:
    """Send every case through the Service and judge what the target `version` answers.

    Right after a rollout completes, kube-proxy may still route a request or two to a draining pod of
    the old version, or (on a busy node) not route the Service's address at all yet and refuse the
    connection: neither is evidence about the new version, so the request is sent again (for up to
    `settle_seconds`) until the new version answers it. A timeout or a wrong answer fails at once.
    """
    result = SmokeResult(total=len(cases), passed=0)
    url = f"{base_url}/v2/models/{model_name}/infer"
    settle_until = time.monotonic() + settle_seconds
    async with httpx.AsyncClient(timeout=smoke.timeout_seconds) as client:
        for i, case in enumerate(cases):
            while True:
                try:
                    resp = await client.post(url, json=case.request)
                    try:
                        body = resp.json()
                    except ValueError:
                        body = resp.text
                    problem = check_response(case, resp.status_code, body, smoke.tolerance)
                    other = answered_by(body)
                    if resp.status_code == 200 and other not in (None, version):
                        problem = f"answered by version {other}, not {version}: the Service still routes to old pods"
                        if time.monotonic() < settle_until:
                            await asyncio.sleep(retry_interval)
                            continue
                except httpx.ConnectError as exc:  # no pod was reached: not an answer from the version
                    problem = f"request failed: {type(exc).__name__}: {exc}"
                    if time.monotonic() < settle_until:
                        await asyncio.sleep(retry_interval)
                        continue
                except httpx.HTTPError as exc:
                    problem = f"request failed: {type(exc).__name__}: {exc}"
                break
            if problem is None:
                result.passed += 1
            else:
                result.failures.append(f"request {i} ({case.request.get('id', i)}): {problem}")
    return result
