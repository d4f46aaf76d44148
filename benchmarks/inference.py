"""Inference benchmark: modelops-serve against the floor and the alternatives, side by side in one run.

For the two model architectures the training pipeline registers (modelops_training.models: the
breast-cancer MLP on 30 tabular features and the digits CNN on [1, 8, 8]) this measures

  1. raw onnxruntime `session.run` in process, one row at a time     (the floor)
  2. `modelops-serve` (one process) over loopback HTTP, one-row v2 requests from N concurrent clients
  3. `mlflow models serve` (one worker) of the same model logged with mlflow.pytorch, same load
  4. torch eager in process, one row at a time
  5. modelops-serve rows/s with dynamic batching on and off under 64 concurrent clients

and prints a table plus the targets (>= 5x mlflow's req/s and p99 < 10 ms for one-row MLP requests;
batching on >= 2x off). Results go to benchmarks/results/inference.json. The machine is shared and
noisy, so compare the ratios within one run, not numbers across runs.

The load generator is a minimal HTTP/1.1 keep-alive client on raw asyncio sockets (pre-encoded
requests, Content-Length responses) so that it costs far less CPU than the servers it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from tests.support import free_port  # noqa: E402  (needs ROOT on sys.path)

BIN = Path(sys.executable).parent
RESULTS = ROOT / "benchmarks" / "results" / "inference.json"


# --- models ----------------------------------------------------------------------------------------

@dataclass
class BenchModel:
    name: str
    module: object  # torch.nn.Module, eval mode
    example: np.ndarray  # one row, float32, shaped like a request
    onnx_path: Path


def build_models(workdir: Path) -> list[BenchModel]:
    import torch

    from modelops_training.models import DigitsCNN, TabularMLP

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    specs = [
        ("mlp", TabularMLP(30, 2).eval(), rng.normal(size=(1, 30)).astype(np.float32)),
        ("cnn", DigitsCNN(10).eval(), rng.integers(0, 17, size=(1, 1, 8, 8)).astype(np.float32)),
    ]
    out = []
    for name, module, example in specs:
        path = workdir / f"{name}.onnx"
        batch = torch.export.Dim("batch", min=1, max=4096)
        torch.onnx.export(module, (torch.from_numpy(np.repeat(example, 2, axis=0)),), str(path), dynamo=True,
                          input_names=["input"], output_names=["probabilities"],
                          dynamic_shapes={"input": {0: batch}}, verbose=False)
        out.append(BenchModel(name, module, example, path))
    return out


# --- in-process floors -----------------------------------------------------------------------------

def time_loop(fn, count: int) -> dict:
    for _ in range(min(200, count)):
        fn()
    latencies = np.empty(count)
    started = time.perf_counter()
    for i in range(count):
        t = time.perf_counter()
        fn()
        latencies[i] = time.perf_counter() - t
    elapsed = time.perf_counter() - started
    return summary(latencies, count, elapsed, rows=count, errors=0)


def summary(latencies: np.ndarray, requests: int, elapsed: float, rows: int, errors: int) -> dict:
    return {
        "requests": requests,
        "errors": errors,
        "seconds": round(elapsed, 3),
        "req_per_s": round(requests / elapsed, 1),
        "rows_per_s": round(rows / elapsed, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 3),
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 3),
    }


def bench_onnxruntime(model: BenchModel, count: int) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # as modelops-serve's default
    session = ort.InferenceSession(str(model.onnx_path), options, providers=["CPUExecutionProvider"])
    feed = {"input": model.example}
    return time_loop(lambda: session.run(None, feed), count)


def bench_torch(model: BenchModel, count: int) -> dict:
    import torch

    torch.set_num_threads(1)
    x = torch.from_numpy(model.example)

    def run():
        with torch.inference_mode():
            model.module(x)

    return time_loop(run, count)


# --- load generator --------------------------------------------------------------------------------

class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that sends a request and waits for its full response."""

    def __init__(self):
        self.transport = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:end]).lower()
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        body = bytes(self.buffer[end + 4:end + 4 + length])
        del self.buffer[:end + 4 + length]
        waiter, self.waiter = self.waiter, None
        waiter.set_result((status, body))

    def connection_lost(self, exc):
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("connection closed"))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


def http_request(port: int, path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def _load(port: int, request: bytes, total: int, clients: int) -> tuple[np.ndarray, float, int, bytes]:
    loop = asyncio.get_running_loop()
    connections = [(await loop.create_connection(_Connection, "127.0.0.1", port))[1] for _ in range(clients)]
    latencies = np.empty(total)
    next_index = 0
    errors = 0
    sample = b""

    async def client(conn: _Connection):
        nonlocal next_index, errors, sample
        while next_index < total:
            i = next_index
            next_index += 1
            t = time.perf_counter()
            status, body = await conn.request(request)
            latencies[i] = time.perf_counter() - t
            if status != 200:
                errors += 1
                sample = body
            elif not sample:
                sample = body

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in connections))
    elapsed = time.perf_counter() - started
    for c in connections:
        c.transport.close()
    return latencies, elapsed, errors, sample


def run_load(port: int, path: str, body: bytes, total: int, clients: int, rows_per_request: int) -> dict:
    import uvloop  # a modelops-inference dependency; the cheaper the client, the more CPU the server gets

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    request = http_request(port, path, body)
    asyncio.run(_load(port, request, min(500, total), clients))  # warm-up
    latencies, elapsed, errors, sample = asyncio.run(_load(port, request, total, clients))
    result = summary(latencies, total, elapsed, rows=total * rows_per_request, errors=errors)
    result["clients"] = clients
    if errors:
        result["error_sample"] = sample[:300].decode(errors="replace")
    return result


# --- servers ---------------------------------------------------------------------------------------

def wait_http(port: int, path: str, process: subprocess.Popen, timeout: float = 180) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(urllib.error.URLError, ConnectionError, OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                if r.status == 200:
                    return
        time.sleep(0.3)
    raise TimeoutError(f"server on {port} not ready")


@contextlib.contextmanager
def process(cmd: list[str], port: int, ready_path: str, env: dict | None = None, log: Path | None = None):
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=environment, start_new_session=True)
    try:
        wait_http(port, ready_path, p)
        yield p
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        if log:
            out.close()


def modelops_serve(model: BenchModel, port: int, batching: bool, workdir: Path):
    cmd = [str(BIN / "modelops-serve"), "--model-uri", str(model.onnx_path), "--model-name", model.name,
           "--host", "127.0.0.1", "--port", str(port), "--batching", str(batching).lower(), "--log-level", "warning"]
    return process(cmd, port, "/v2/health/ready", log=workdir / f"modelops-{model.name}-{port}.log")


def v2_body(model: BenchModel, rows: int) -> bytes:
    x = np.repeat(model.example, rows, axis=0)
    return json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                   "data": x.ravel().tolist()}]}).encode()


def log_to_mlflow(models: list[BenchModel], store: Path) -> tuple[str, dict[str, str]]:
    """Registers each torch model with mlflow.pytorch (as the training pipeline does) in a sqlite store."""
    import mlflow
    import torch
    from mlflow.models import infer_signature

    shutil.rmtree(store, ignore_errors=True)  # the benchmark's own scratch store, fresh each run
    store.mkdir(parents=True)
    uri = f"sqlite:///{store}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    name = f"bench-{int(time.time())}"
    experiment = mlflow.create_experiment(name, artifact_location=str(store / "artifacts" / name))
    uris = {}
    for m in models:
        with torch.inference_mode():
            y = m.module(torch.from_numpy(m.example)).numpy()
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.pytorch.log_model(m.module, name="model", signature=infer_signature(m.example, y),
                                            input_example=m.example)
        uris[m.name] = info.model_uri
    return uri, uris


def mlflow_serve(model_uri: str, tracking: str, port: int, workdir: Path, name: str):
    cmd = [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local", "-w", "1",
           "-h", "127.0.0.1", "-p", str(port)]
    env = {"MLFLOW_TRACKING_URI": tracking}
    return process(cmd, port, "/ping", env=env, log=workdir / f"mlflow-{name}.log")


# --- the run ---------------------------------------------------------------------------------------

def bench(args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="modelops-bench-"))
    print(f"exporting models (work dir {workdir})", file=sys.stderr)
    models = build_models(workdir)
    tracking, mlflow_uris = (None, {})
    if not args.skip_mlflow:
        print("logging models to MLflow (.data/bench-mlflow)", file=sys.stderr)
        tracking, mlflow_uris = log_to_mlflow(models, ROOT / ".data" / "bench-mlflow")
    results: dict = {"models": {}}
    for m in models:
        r: dict = {}
        print(f"[{m.name}] in process: onnxruntime, torch eager", file=sys.stderr)
        r["onnxruntime_in_process"] = bench_onnxruntime(m, args.inproc_requests)
        r["torch_eager_in_process"] = bench_torch(m, args.inproc_requests)
        one_row = v2_body(m, 1)
        path = f"/v2/models/{m.name}/infer"
        for batching in (True, False):
            port = free_port()
            with modelops_serve(m, port, batching, workdir):
                key = "on" if batching else "off"
                if batching:
                    print(f"[{m.name}] modelops-serve: {args.requests} one-row requests, {args.clients} clients",
                          file=sys.stderr)
                    r["modelops_serve"] = run_load(port, path, one_row, args.requests, args.clients, 1)
                print(f"[{m.name}] modelops-serve batching {key}: {args.batch_requests} requests of "
                      f"{args.batch_rows} rows, {args.batch_clients} clients", file=sys.stderr)
                r[f"modelops_serve_batching_{key}"] = run_load(
                    port, path, v2_body(m, args.batch_rows), args.batch_requests, args.batch_clients, args.batch_rows)
        if not args.skip_mlflow:
            port = free_port()
            print(f"[{m.name}] mlflow models serve: {args.mlflow_requests} one-row requests", file=sys.stderr)
            with mlflow_serve(mlflow_uris[m.name], tracking, port, workdir, m.name):
                body = json.dumps({"inputs": m.example.tolist()}).encode()
                r["mlflow_models_serve"] = run_load(port, "/invocations", body, args.mlflow_requests, args.clients, 1)
        results["models"][m.name] = r
    results["targets"] = targets(results)
    return results


def targets(results: dict) -> dict:
    out = {}
    for name, r in results["models"].items():
        t = {}
        if "mlflow_models_serve" in r:
            t["speedup_vs_mlflow"] = round(r["modelops_serve"]["req_per_s"] / r["mlflow_models_serve"]["req_per_s"], 2)
        t["p99_ms"] = r["modelops_serve"]["p99_ms"]
        t["batching_speedup"] = round(r["modelops_serve_batching_on"]["rows_per_s"]
                                      / r["modelops_serve_batching_off"]["rows_per_s"], 2)
        out[name] = t
    mlp = out.get("mlp", {})
    out["met"] = {
        "mlp_5x_mlflow": mlp.get("speedup_vs_mlflow", 0) >= 5,
        "mlp_p99_under_10ms": mlp.get("p99_ms", 1e9) < 10,
        "batching_2x": all(t["batching_speedup"] >= 2 for k, t in out.items() if k != "met"),
    }
    return out


def table(results: dict, args) -> str:
    rows = [("model", "setup", "req/s", "rows/s", "p50 ms", "p99 ms")]
    labels = [
        ("onnxruntime_in_process", "onnxruntime session.run, in process (floor)"),
        ("modelops_serve", f"modelops-serve, HTTP, {args.clients} clients"),
        ("mlflow_models_serve", f"mlflow models serve, HTTP, {args.clients} clients"),
        ("torch_eager_in_process", "torch eager, in process"),
        ("modelops_serve_batching_on", f"modelops-serve batching on, {args.batch_clients} clients"),
        ("modelops_serve_batching_off", f"modelops-serve batching off, {args.batch_clients} clients"),
    ]
    for name, r in results["models"].items():
        for key, label in labels:
            if key in r:
                x = r[key]
                err = f" ({x['errors']} errors)" if x["errors"] else ""
                rows.append((name, label + err, f"{x['req_per_s']:,.0f}", f"{x['rows_per_s']:,.0f}",
                             f"{x['p50_ms']:.2f}", f"{x['p99_ms']:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    t = results["targets"]
    lines.append("")
    for name in results["models"]:
        x = t[name]
        vs = f"{x['speedup_vs_mlflow']}x mlflow's req/s, " if "speedup_vs_mlflow" in x else ""
        lines.append(f"{name}: modelops-serve {vs}p99 {x['p99_ms']} ms; "
                     f"batching on/off rows/s {x['batching_speedup']}x")
    lines.append("targets met: " + ", ".join(f"{k}={v}" for k, v in t["met"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=20000, help="one-row requests to modelops-serve per model")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients for the one-row runs")
    p.add_argument("--mlflow-requests", type=int, default=3000, help="one-row requests to mlflow models serve")
    p.add_argument("--batch-requests", type=int, default=10000, help="requests per batching on/off run")
    p.add_argument("--batch-clients", type=int, default=64, help="concurrent clients for batching on/off")
    p.add_argument("--batch-rows", type=int, default=1, help="rows per request in the batching on/off runs")
    p.add_argument("--inproc-requests", type=int, default=5000, help="single-row runs in process")
    p.add_argument("--skip-mlflow", action="store_true", help="skip the mlflow models serve comparison")
    p.add_argument("--output", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    started = time.time()
    results = bench(args)
    results["settings"] = {k: v for k, v in vars(args).items() if k != "output"}
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average_at_start": os.getloadavg()}
    results["seconds"] = round(time.time() - started, 1)
    text = table(results, args)
    results["table"] = text.splitlines()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(text)
    print(f"\nwritten to {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}"
          f" in {results['seconds']} s")


if __name__ == "__main__":
    main()
