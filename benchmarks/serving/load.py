"""Drives loadgen.py processes from the benchmark: one measured window, the server's CPU time read at its
edges, every client process's latencies merged into one summary."""

from __future__ import annotations

import array
import base64
import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.serving import stats
from benchmarks.serving.servers import die_with_parent

LOADGEN = Path(__file__).resolve().parent / "loadgen.py"


@dataclass(frozen=True)
class Generator:
    """How to start a load generator process: the Go binary, or loadgen.py under the loadgen venv's python."""

    name: str  # "go" or "python"
    command: tuple[str, ...]

    @classmethod
    def go(cls, binary: Path) -> Generator:
        return cls("go", (str(binary),))

    @classmethod
    def python(cls, python: Path) -> Generator:
        return cls("python", (str(python), str(LOADGEN)))


@dataclass(frozen=True)
class Load:
    """What every client sends, encoded once: an HTTP request, or (mode grpc) a serialized ModelInferRequest."""

    mode: str  # "http" or "grpc"
    port: int
    rows: int  # per request
    request: bytes = b""

    def spec(self) -> dict:
        key = "grpc_request_b64" if self.mode == "grpc" else "request_b64"
        return {"mode": self.mode, "port": self.port, key: base64.b64encode(self.request).decode()}


def probe(generator: Generator, load: Load) -> dict:
    """One request through the load generator; its answer as a sample (see loadgen.probe)."""
    done = subprocess.run([*generator.command, "-"], input=json.dumps({**load.spec(), "probe": True}),
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        return {"status": 0, "error": f"load generator failed: {done.stderr.strip()[-500:]}"}
    return json.loads(done.stdout)


def _sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def measure(generator: Generator, load: Load, connections: int, seconds: float, warmup: float, *, processes: int = 1,
            server_cpu: Callable[[], float] | None = None, counters: Callable[[], dict[str, float]] | None = None,
            retry_after_cap_s: float = 1.0) -> dict:
    """`connections` closed-loop clients split over `processes` load generators for one window of
    `seconds` after `warmup`; the server's CPU seconds (and its `counters`, if given) are read as the
    window opens and closes."""
    processes = max(1, min(processes, connections))
    setup = 1.0 + connections / 500 + (1.0 if generator.name == "python" else 0.0)  # process start, connects
    start_at = time.monotonic() + setup
    shares = [connections // processes + (i < connections % processes) for i in range(processes)]
    procs = []
    for share in shares:
        spec = {**load.spec(), "connections": share, "start_at": start_at, "warmup_s": warmup,
                "duration_s": seconds, "retry_after_cap_s": retry_after_cap_s}
        spec_file = tempfile.NamedTemporaryFile("w", suffix=".json", prefix="loadgen-", delete=False)  # noqa: SIM115
        with spec_file:
            json.dump(spec, spec_file)
        procs.append((subprocess.Popen([*generator.command, spec_file.name], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, preexec_fn=die_with_parent),
                      Path(spec_file.name)))
    t0 = start_at + warmup
    _sleep_until(t0)
    cpu0 = server_cpu() if server_cpu else None
    before = counters() if counters else {}
    _sleep_until(t0 + seconds)
    cpu1 = server_cpu() if server_cpu else None
    after = counters() if counters else {}
    results = []
    for p, spec_path in procs:
        out, err = p.communicate(timeout=120)
        spec_path.unlink(missing_ok=True)
        if p.returncode != 0:
            raise RuntimeError(f"load generator exited with {p.returncode}: {err.strip()[-800:]}")
        results.append(json.loads(out))
    out = merge(results, seconds, load.rows, None if cpu0 is None else cpu1 - cpu0, connections)
    out["load_generator"] = generator.name
    if after:
        out["server_counters"] = {k: round(v - before.get(k, 0.0), 6) for k, v in after.items()}
    return out


def merge(results: list[dict], seconds: float, rows: int, server_cpu_s: float | None, connections: int) -> dict:
    latencies = array.array("d")
    for r in results:
        latencies.frombytes(base64.b64decode(r["latencies_b64"]))
    out = stats.summarise(latencies, seconds, rows, rejected=sum(r["rejected"] for r in results),
                          errors=sum(r["errors"] for r in results), server_cpu_s=server_cpu_s,
                          client_cpu_s=sum(r["client_cpu_s"] for r in results))
    out["connections"] = connections
    out["client_processes"] = len(results)
    late = max(r["late_start_s"] for r in results)
    if late:
        out["client_late_start_s"] = late
    samples: dict = {}
    for r in results:
        for k, v in r["samples"].items():
            samples.setdefault(k, v)
    for key in ("error", "rejected"):
        if key in samples:
            out[f"{key}_sample"] = _brief(samples[key])
    return out


def _brief(sample: dict) -> str:
    if "error" in sample:
        return sample["error"]
    body = base64.b64decode(sample.get("body_b64", "")).decode(errors="replace")
    return f"{sample.get('status')}: {body[:200]}"
