"""Inference benchmark: modelops-serve against the floors and the alternatives, side by side in one run.

For the two model architectures the training pipeline registers (modelops_training.models: the
breast-cancer MLP on 30 tabular features and the digits CNN on [1, 8, 8]), exported once to ONNX and
served by every server from the same file, this measures with one load generator:

  one_row   one-row requests from `--clients` connections: the in-process floor (onnxruntime
            `session.run`, and torch eager), the HTTP floor (uvicorn answering a constant),
            modelops-serve over v2 JSON, the v2 binary tensor extension and v2 gRPC, MLServer 1.7
            (a custom onnxruntime runtime), KServe's Python ModelServer 0.21, `mlflow models serve`
  rows      the CNN with `--rows` rows per request: modelops-serve JSON vs binary vs gRPC
  batching  one-row requests from `--batch-clients` connections, modelops-serve batching on vs off,
            per protocol
  overload  the MLP from `--overload-connections` vs 32 connections: admitted (200) against
            rejected (503 + Retry-After) requests, admitted throughput and p99
  drift     the one-row MLP from `--clients` connections, drift counting off (no reference) against on
            (`--reference`, a decile profile of 1,000 rows like the example's), JSON and gRPC, in
            `--drift-rounds` alternating pairs

Each server is one process with one worker; every row reports req/s, rows/s, p50/p99 latency, the
server process tree's CPU time per request (/proc, read at the edges of the measured window), and how
many cores the server and the load generator used. Then the targets, PASS/FAIL. Results go to
benchmarks/results/inference.json. The machine is small and shared, so compare the ratios within
one run, not numbers across runs.

The load generator (benchmarks/serving/loadgen.py) is a separate process in its own venv: closed-loop
clients on raw asyncio sockets (HTTP/1.1 keep-alive, requests encoded once) or grpc.aio; each client
waits for an answer before sending again. A mode this server build does not support (binary, gRPC,
admission control before they merge) is reported as such instead of measured. MLServer, KServe and
the load generator get their own venvs from pinned files (benchmarks/serving/requirements/), created
on first use under the main checkout's .cache/bench-venvs/.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import importlib.util
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "inference", ROOT / "training"):  # this checkout's code, not an installed copy
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from benchmarks.serving import report, servers, tools, wire  # noqa: E402  (needs ROOT on sys.path)
from benchmarks.serving.load import Generator, Load, measure, probe  # noqa: E402
from benchmarks.serving.stats import summarise  # noqa: E402
from tests.support import free_port  # noqa: E402

BIN = Path(sys.executable).parent
RESULTS = ROOT / "benchmarks" / "results" / "inference.json"
INPUT, OUTPUT = "input", "probabilities"
GRPC_PORT_FLAG = "--grpc-port"
ADMISSION_FLAG = "--max-queue-depth"  # 503 + Retry-After past this many requests in the server
REFERENCE_FLAG = "--reference"  # the drift reference; without one, no drift counting
PROTOCOLS = ("json", "binary", "grpc")
SERVERS = ("inprocess", "floors", "modelops", "mlserver", "kserve", "mlflow")
LABELS = {
    "inprocess": "onnxruntime session.run, in process (floor)",
    "torch": "torch eager, in process",
    "http_floor": "uvicorn answering a constant (HTTP floor)",
    "grpc_floor": "grpc.aio answering a constant (gRPC floor)",
    "modelops": "modelops-serve",
    "mlserver_pw0": "MLServer 1.7, parallel_workers 0",
    "mlserver_pw1": "MLServer 1.7, parallel_workers 1 (its default)",
    "kserve": "KServe ModelServer 0.21",
    "mlflow": "mlflow models serve",
}


# --- models ----------------------------------------------------------------------------------------

@dataclass
class BenchModel:
    name: str
    module: object  # torch.nn.Module, eval mode
    example: np.ndarray  # one row, float32, shaped like a request
    onnx_path: Path
    session: object = None  # onnxruntime session on the same file: the expected outputs

    def batch(self, rows: int) -> np.ndarray:
        return np.repeat(self.example, rows, axis=0)

    def expected(self, rows: int) -> np.ndarray:
        return self.session.run(None, {INPUT: self.batch(rows)})[0]


def build_models(workdir: Path) -> list[BenchModel]:
    import onnxruntime as ort
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
                          input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_shapes={"input": {0: batch}}, verbose=False)
        out.append(BenchModel(name, module, example, path, session=_session(ort, path)))
    return out


def _session(ort, path: Path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # as modelops-serve's default
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


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


# --- in-process floors -----------------------------------------------------------------------------

def time_loop(fn: Callable[[], object], seconds: float, warmup: float) -> dict:
    """Calls `fn` back to back for `seconds` after `warmup`; CPU is this process's (one thread runs)."""
    deadline = time.monotonic() + warmup
    while time.monotonic() < deadline:
        fn()
    latencies: list[float] = []
    cpu0, started = time.process_time(), time.monotonic()
    end = started + seconds
    now = started
    while now < end:
        fn()
        t = time.monotonic()
        latencies.append(t - now)
        now = t
    return summarise(latencies, now - started, 1, server_cpu_s=time.process_time() - cpu0)


def bench_onnxruntime(model: BenchModel, seconds: float, warmup: float) -> dict:
    feed = {INPUT: model.example}
    return time_loop(lambda: model.session.run(None, feed), seconds, warmup)


def bench_torch(model: BenchModel, seconds: float, warmup: float) -> dict:
    import torch

    torch.set_num_threads(1)
    x = torch.from_numpy(model.example)

    def run():
        with torch.inference_mode():
            model.module(x)

    return time_loop(run, seconds, warmup)


# --- requests --------------------------------------------------------------------------------------

def v2_load(protocol: str, server: servers.Server, model: BenchModel, rows: int) -> Load:
    x = {INPUT: model.batch(rows)}
    path = f"/v2/models/{model.name}/infer"
    if protocol == "json":
        return Load("http", server.http_port, rows, wire.v2_json_request(server.http_port, path, x))
    if protocol == "binary":
        return Load("http", server.http_port, rows, wire.v2_binary_request(server.http_port, path, x, [OUTPUT]))
    return Load("grpc", server.grpc_port or 0, rows, wire.grpc_infer_request(model.name, x))


def mlflow_load(server: servers.Server, model: BenchModel, rows: int) -> Load:
    body = wire.mlflow_json(model.batch(rows))
    return Load("http", server.http_port, rows, wire.http_post(server.http_port, "/invocations", body))


def outputs_of(sample: dict, protocol: str) -> np.ndarray:
    """The probabilities in a probe's answer (an HTTP body in any protocol's shape, or gRPC outputs)."""
    body = base64.b64decode(sample["body_b64"])
    if protocol == "grpc":
        return wire.decode_grpc_response(body)[OUTPUT]
    if protocol == "mlflow":
        return wire.decode_mlflow(body)
    length = next((line.split(":", 1)[1].strip() for line in sample["head"].split("\r\n")
                   if line.startswith(wire.HEADER_LENGTH.lower() + ":")), None)
    return wire.decode_v2(body, int(length) if length else None)[OUTPUT]


def check(sample: dict, protocol: str, expected: np.ndarray | None) -> str | None:
    """Why a probe's answer is not the model's output for the request (None: it is)."""
    if sample.get("status") != 200:
        body = base64.b64decode(sample.get("body_b64", "")).decode(errors="replace")
        return f"{sample.get('status') or 'no answer'}: {sample.get('error') or body}"[:300]
    if expected is None:
        return None
    try:
        got = outputs_of(sample, protocol)
    except (KeyError, ValueError, StopIteration) as e:
        return f"answer not understood: {e!r}"
    if got.shape != expected.shape or not np.allclose(got, expected, atol=1e-4):
        return f"outputs differ from onnxruntime's: {got.ravel()[:4]} vs {expected.ravel()[:4]}"
    return None


# --- the run ---------------------------------------------------------------------------------------

@dataclass
class Bench:
    """The settings of this run and what it has measured so far."""

    args: argparse.Namespace
    loadgen: Generator
    workdir: Path
    runs: list[dict] = field(default_factory=list)

    def record(self, keys: dict, result: dict | None = None, status: str = "ok", reason: str = "") -> None:
        r = {k: keys.get(k) for k in report.KEYS} | {"status": status, "load_1min": round(os.getloadavg()[0], 2)}
        if reason:
            r["reason"] = reason
        self.runs.append(r | (result or {}))
        label = LABELS.get(r["server"], r["server"])
        what = (f"{result['req_per_s']:,.0f} req/s, p99 {result['p99_ms']} ms" if result and status == "ok"
                else f"{status}: {reason}")
        print(f"  [{r['scenario']}] {r['model']} {label} {r['protocol']} {r['clients']} clients x {r['rows']} rows: "
              f"{what}", file=sys.stderr, flush=True)

    def load_run(self, keys: dict, server: servers.Server, load: Load, expected: np.ndarray | None,
                 unsupported: str | None = None) -> None:
        """Probes `load` (right answer?), then measures it; a protocol the server lacks is recorded as such."""
        if unsupported:
            self.record(keys, status="unsupported", reason=unsupported)
            return
        problem = check(probe(self.loadgen, load), keys["protocol"], expected)
        if problem:
            optional = keys["protocol"] in ("binary", "grpc")
            self.record(keys, status="unsupported" if optional else "failed",
                        reason=("unsupported by this server build: " if optional else "") + problem)
            return
        a = self.args
        counters = server.counters if keys["server"] == "modelops" else None
        with self.guard(keys):
            result = measure(self.loadgen, load, keys["clients"], a.seconds, a.warmup,
                             processes=a.client_processes, server_cpu=server.cpu_seconds, counters=counters)
            self.record(keys, result | batch_sizes(result.pop("server_counters", {})))

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    @contextlib.contextmanager
    def guard(self, keys: dict) -> Iterator[None]:
        """A server that does not start (or a run that breaks) is one failed row, not the end of the benchmark."""
        try:
            yield
        except (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError) as e:
            self.record(keys, status="failed", reason=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")


def batch_sizes(counters: dict[str, float]) -> dict:
    """Mean rows and requests per model run in the window, from modelops-serve's batch histograms."""
    out = {}
    for what in ("rows", "requests"):
        runs = counters.get(f"modelops_inference_batch_{what}_count")
        if runs:
            out[f"{what}_per_model_run"] = round(counters[f"modelops_inference_batch_{what}_sum"] / runs, 2)
    return out


def modelops_env(inference_src: Path) -> dict:
    return {"PYTHONPATH": os.pathsep.join(str(p) for p in (inference_src, ROOT / "training", ROOT / "operator"))}


@contextlib.contextmanager
def modelops(b: Bench, model: BenchModel, batching: bool, flags: set[str], extra: tuple[str, ...] = (),
             log: str = "") -> Iterator[servers.Server]:
    grpc_flag = GRPC_PORT_FLAG if GRPC_PORT_FLAG in flags else None
    port = free_port()
    with servers.modelops_serve(sys.executable, modelops_env(b.args.inference_src), model.onnx_path, model.name, port,
                                b.log(log or f"modelops-{model.name}-{'on' if batching else 'off'}"), batching=batching,
                                grpc_flag=grpc_flag, grpc_port=free_port() if grpc_flag else None,
                                extra=[*extra, *shlex.split(b.args.serve_args)]) as server:
        yield server


def drift_reference(model: BenchModel, path: Path, rows: int = 1000) -> Path:
    """A `modelops.reference/v1` profile of rows drawn like the example row's (standard normal): interior
    deciles per column and the rows per bin, as training writes it."""
    x = np.random.default_rng(1).normal(size=(rows, model.example.reshape(1, -1).shape[1]))
    features = []
    for j, column in enumerate(x.T):
        edges = np.unique(np.quantile(column, np.linspace(0.1, 0.9, 9)))
        counts = np.bincount(np.searchsorted(edges, column, side="right"), minlength=edges.size + 1)
        features.append({"name": f"x{j}", "edges": edges.tolist(), "counts": counts.tolist()})
    path.write_text(json.dumps({"format": "modelops.reference/v1", "rows": rows, "features": features,
                                "predictions": {"classes": ["0", "1"], "counts": [rows // 2, rows - rows // 2]}}))
    return path


def drift_count_us(model: BenchModel, reference: Path, runs: int = 20000) -> float:
    """Microseconds the server's drift counter spends per one-row run (its `observe` plus its share of the
    folds), in this process: the overhead without the noise of a shared machine's req/s."""
    from modelops_inference.drift import Drift, read_reference
    from modelops_inference.protocol import TensorSpec

    counter = Drift(read_reference(reference), TensorSpec(INPUT, "FP32", (-1, model.example.shape[1])))
    inputs = [{INPUT: model.example.copy()} for _ in range(256)]
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for i in range(runs):
            counter.observe(inputs[i & 255])
        counter.fold()
        best = min(best, (time.perf_counter() - started) / runs)
    return round(best * 1e6, 2)


def bench_drift(b: Bench, m: BenchModel, flags: set[str]) -> None:
    """The one-row MLP with drift counting off (no reference beside the model) and on (`--reference`): both
    servers up at once and measured in turn, `--drift-rounds` times, so slow changes in the machine's other
    load hit both alike; each round's on run is compared with that round's off run."""
    a = b.args
    keys = dict(scenario="drift", model=m.name, server="modelops", clients=a.clients, rows=1)
    if REFERENCE_FLAG not in flags:
        b.record(keys | {"protocol": "json", "drift": "on"}, status="unsupported",
                 reason=f"unsupported by this server build: modelops-serve has no {REFERENCE_FLAG} flag")
        return
    path = drift_reference(m, b.workdir / "reference-mlp.json")
    reference, count_us = (REFERENCE_FLAG, str(path)), drift_count_us(m, path)
    with b.guard(keys | {"protocol": "json", "drift": "off"}), contextlib.ExitStack() as stack:
        running = {drift: stack.enter_context(modelops(b, m, True, flags, extra, f"modelops-{m.name}-drift-{drift}"))
                   for drift, extra in (("off", ()), ("on", reference))}
        for round_ in range(1, a.drift_rounds + 1):
            for protocol in ("json", "grpc"):
                for drift, s in running.items():
                    missing = grpc_missing(s) if protocol == "grpc" else None
                    b.load_run(keys | {"protocol": protocol, "drift": drift, "round": round_}, s,
                               v2_load(protocol, s, m, 1), m.expected(1), missing)
                    if drift == "on" and b.runs[-1].get("status") == "ok":
                        b.runs[-1]["drift_count_us_per_run"] = count_us


def grpc_missing(server: servers.Server) -> str | None:
    if server.grpc_port is None:
        return f"unsupported by this server build: modelops-serve has no {GRPC_PORT_FLAG} flag"
    return None


def bench_modelops(b: Bench, m: BenchModel, flags: set[str]) -> dict[str, bytes]:
    """Every scenario against modelops-serve for one model; returns its one-row answers by protocol (the
    floors answer the same bytes)."""
    a = b.args
    answers = {}
    first = dict(scenario="one_row", model=m.name, server="modelops", protocol="json", clients=a.clients, rows=1)
    with b.guard(first), modelops(b, m, True, flags) as s:
        for protocol in PROTOCOLS:
            missing = grpc_missing(s) if protocol == "grpc" else None
            load = v2_load(protocol, s, m, 1)
            if not missing:
                sample = probe(b.loadgen, load)
                if sample.get("status") == 200:
                    answers[protocol] = base64.b64decode(sample["body_b64"])
            if "one_row" in a.scenarios:
                b.load_run(dict(scenario="one_row", model=m.name, server="modelops", protocol=protocol,
                                clients=a.clients, rows=1), s, load, m.expected(1), missing)
            if "batching" in a.scenarios:
                b.load_run(dict(scenario="batching", model=m.name, server="modelops", protocol=protocol,
                                clients=a.batch_clients, rows=1, batching="on"), s, load, m.expected(1), missing)
        if "rows" in a.scenarios and m.name == "cnn":
            for rows in a.rows:
                for protocol in PROTOCOLS:
                    missing = grpc_missing(s) if protocol == "grpc" else None
                    b.load_run(dict(scenario="rows", model=m.name, server="modelops", protocol=protocol,
                                    clients=a.rows_clients, rows=rows), s, v2_load(protocol, s, m, rows),
                               m.expected(rows), missing)
        if "overload" in a.scenarios and m.name == "mlp":
            if ADMISSION_FLAG not in flags:
                print(f"  modelops-serve has no {ADMISSION_FLAG}: overload runs without admission control",
                      file=sys.stderr)
            for connections in (a.clients, a.overload_connections):
                b.load_run(dict(scenario="overload", model=m.name, server="modelops", protocol="json",
                                clients=connections, rows=1), s, v2_load("json", s, m, 1), m.expected(1))
    if "batching" in a.scenarios:
        off = dict(scenario="batching", model=m.name, server="modelops", protocol="json", clients=a.batch_clients,
                   rows=1, batching="off")
        with b.guard(off), modelops(b, m, False, flags) as s:
            for protocol in PROTOCOLS:
                missing = grpc_missing(s) if protocol == "grpc" else None
                b.load_run(dict(scenario="batching", model=m.name, server="modelops", protocol=protocol,
                                clients=a.batch_clients, rows=1, batching="off"), s, v2_load(protocol, s, m, 1),
                           m.expected(1), missing)
    return answers


def bench_floors(b: Bench, m: BenchModel, answers: dict[str, bytes]) -> None:
    """uvicorn and grpc.aio answering modelops-serve's own answers as constants, under the same load."""
    one_row = dict(scenario="one_row", model=m.name, clients=b.args.clients, rows=1)
    outputs = {OUTPUT: m.expected(1)}
    json_answer = answers.get("json") or wire.v2_json(outputs).replace(b'"inputs"', b'"outputs"')
    with b.guard(one_row | dict(server="http_floor", protocol="json")), \
            servers.http_floor(sys.executable, json_answer, free_port(), b.workdir, b.log(f"floor-{m.name}")) as s:
        b.load_run(one_row | dict(server="http_floor", protocol="json"), s, v2_load("json", s, m, 1), None)
    python = sys.executable if importlib.util.find_spec("grpc") else str(tools.ensure("loadgen", ROOT))
    grpc_answer = answers.get("grpc") or wire.grpc_infer_response(m.name, outputs)
    with b.guard(one_row | dict(server="grpc_floor", protocol="grpc")), \
            servers.grpc_floor(python, grpc_answer, free_port(), b.workdir, b.log(f"grpc-floor-{m.name}")) as s:
        b.load_run(one_row | dict(server="grpc_floor", protocol="grpc"), s, v2_load("grpc", s, m, 1), m.expected(1))


def bench_alternatives(b: Bench, m: BenchModel, mlflow: tuple[str, dict[str, str]] | None) -> None:
    """The one-row scenario against every other server."""
    a = b.args
    one_row = dict(scenario="one_row", model=m.name, clients=a.clients, rows=1)
    if "mlserver" in a.servers:
        python = str(tools.ensure("mlserver", ROOT))
        for workers in a.mlserver_parallel_workers:
            ports = [free_port() for _ in range(3)]
            with b.guard(one_row | dict(server=f"mlserver_pw{workers}", protocol="json")), \
                    servers.mlserver(python, m.onnx_path, m.name, *ports, b.workdir,
                                     b.log(f"mlserver-{m.name}-{workers}"), workers) as s:
                for protocol in ("json", "grpc"):
                    b.load_run(one_row | dict(server=f"mlserver_pw{workers}", protocol=protocol), s,
                               v2_load(protocol, s, m, 1), m.expected(1))
    if "kserve" in a.servers:
        python = str(tools.ensure("kserve", ROOT))
        with b.guard(one_row | dict(server="kserve", protocol="json")), \
                servers.kserve(python, m.onnx_path, m.name, free_port(), free_port(), b.log(f"kserve-{m.name}")) as s:
            for protocol in PROTOCOLS:
                b.load_run(one_row | dict(server="kserve", protocol=protocol), s, v2_load(protocol, s, m, 1),
                           m.expected(1))
    if mlflow is not None:
        tracking, uris = mlflow
        port = free_port()
        with b.guard(one_row | dict(server="mlflow", protocol="mlflow")), \
                servers.mlflow_serve(BIN, uris[m.name], tracking, port, b.log(f"mlflow-{m.name}")) as s:
            b.load_run(one_row | dict(server="mlflow", protocol="mlflow"), s, mlflow_load(s, m, 1), m.expected(1))


def load_generator(choice: str) -> Generator:
    """The Go load generator unless asked for Python or Go is not installed."""
    if choice in ("auto", "go"):
        try:
            binary = tools.go_loadgen(ROOT)
        except subprocess.CalledProcessError as e:
            if choice == "go":
                raise
            print(f"the Go load generator did not build ({e}): using the Python one", file=sys.stderr)
            binary = None
        if binary is not None:
            return Generator.go(binary)
        if choice == "go":
            raise SystemExit("--loadgen go: no Go toolchain (`go`) on PATH")
        print("no Go toolchain: using the Python load generator (costs more CPU per request)", file=sys.stderr)
    return Generator.python(tools.ensure("loadgen", ROOT))


def bench(args) -> list[dict]:
    workdir = Path(tempfile.mkdtemp(prefix="modelops-bench-"))
    b = Bench(args, load_generator(args.loadgen), workdir)
    print(f"load generator: {b.loadgen.name} ({' '.join(b.loadgen.command)})", file=sys.stderr)
    print(f"exporting models (work dir {workdir})", file=sys.stderr)
    models = [m for m in build_models(workdir) if m.name in args.models]
    mlflow = None
    if "mlflow" in args.servers and "one_row" in args.scenarios:
        print("logging models to MLflow (.data/bench-mlflow)", file=sys.stderr)
        mlflow = log_to_mlflow(models, ROOT / ".data" / "bench-mlflow")
    flags = servers.modelops_flags(sys.executable, modelops_env(args.inference_src))
    for m in models:
        print(f"[{m.name}]", file=sys.stderr)
        if "inprocess" in args.servers and "one_row" in args.scenarios:
            keys = dict(scenario="one_row", model=m.name, protocol="in process", clients=1, rows=1)
            b.record(keys | {"server": "inprocess"}, bench_onnxruntime(m, args.seconds, args.warmup))
            b.record(keys | {"server": "torch"}, bench_torch(m, args.seconds, args.warmup))
        own = {"one_row", "rows", "batching", "overload"} & set(args.scenarios)
        answers = bench_modelops(b, m, flags) if "modelops" in args.servers and own else {}
        if "drift" in args.scenarios and "modelops" in args.servers and m.name == "mlp":
            bench_drift(b, m, flags)
        if "one_row" in args.scenarios:
            if "floors" in args.servers:
                bench_floors(b, m, answers)
            bench_alternatives(b, m, mlflow)
    shutil.rmtree(workdir, ignore_errors=True)
    return b.runs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    def names(allowed):
        def parse(value: str) -> list[str]:
            items = [v.strip() for v in value.split(",") if v.strip()]
            if unknown := [v for v in items if v not in allowed]:
                raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {', '.join(allowed)}")
            return items
        return parse

    def ints(value: str) -> list[int]:
        return [int(v) for v in value.split(",") if v.strip()]

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke test: 1 s windows, 0.3 s warm-up, rows 16,256")
    p.add_argument("--seconds", type=float, default=5.0, help="measured window per run")
    p.add_argument("--warmup", type=float, default=1.0, help="load before each window, not counted")
    p.add_argument("--clients", type=int, default=32, help="connections for one-row runs (and overload's baseline)")
    p.add_argument("--batch-clients", type=int, default=64, help="connections for batching on/off")
    p.add_argument("--rows", type=ints, default=[16, 64, 256], help="rows per request in the CNN rows scenario")
    p.add_argument("--rows-clients", type=int, default=8, help="connections in the rows scenario")
    p.add_argument("--overload-connections", type=int, default=1000, help="connections in the overload run")
    p.add_argument("--drift-rounds", type=int, default=3, help="off/on pairs in the drift scenario")
    p.add_argument("--client-processes", type=int, default=1, help="load generator processes per run")
    p.add_argument("--loadgen", choices=("auto", "go", "python"), default="auto",
                   help="load generator: Go (benchmarks/serving/loadgen_go, built on first use) or Python")
    p.add_argument("--mlserver-parallel-workers", type=ints, default=[0, 1],
                   help="MLServer parallel_workers settings to run (0: inference in the server process)")
    p.add_argument("--models", type=names(("mlp", "cnn")), default=["mlp", "cnn"])
    p.add_argument("--servers", type=names(SERVERS), default=list(SERVERS))
    p.add_argument("--scenarios", type=names(tuple(report.SCENARIOS)), default=list(report.SCENARIOS))
    p.add_argument("--skip-mlflow", action="store_true", help="same as leaving mlflow out of --servers")
    p.add_argument("--serve-args", default="", help="extra modelops-serve flags, e.g. '--max-queue-depth 64'")
    p.add_argument("--inference-src", type=Path, default=ROOT / "inference",
                   help="the inference/ folder whose modelops-serve is measured (e.g. another branch's, exported)")
    p.add_argument("--wait-for-load", type=float, default=0.0,
                   help="first wait until the 1-minute load average is below this (0: start at once)")
    p.add_argument("--wait-minutes", type=float, default=60.0, help="longest wait for --wait-for-load")
    p.add_argument("--output", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup = min(args.seconds, 1.0), min(args.warmup, 0.3)
        if args.rows == [16, 64, 256]:
            args.rows = [16, 256]
    if args.skip_mlflow and "mlflow" in args.servers:
        args.servers.remove("mlflow")
    return args


def flags_of(args) -> set[str]:
    return servers.modelops_flags(sys.executable, modelops_env(args.inference_src))


def wait_for_quiet(threshold: float, minutes: float) -> None:
    """Waits until the 1-minute load average is below `threshold`; after `minutes`, gives up (exit 3)
    rather than measure on a busy machine."""
    deadline = time.monotonic() + minutes * 60
    while (load := os.getloadavg()[0]) >= threshold:
        if time.monotonic() > deadline:
            raise SystemExit(f"the machine never got quiet in {minutes:g} min (1-minute load average {load:.2f} ≥ "
                             f"{threshold}); not measuring")
        print(f"waiting for a quiet machine: 1-minute load average {load:.2f} ≥ {threshold}", file=sys.stderr)
        time.sleep(30)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.wait_for_load:
        wait_for_quiet(args.wait_for_load, args.wait_minutes)
    load = os.getloadavg()[0]
    if load > 0.7:
        print(f"warning: 1-minute load average {load:.2f}: other work is running, the numbers will be noisy",
              file=sys.stderr)
    started = time.time()
    runs = bench(args)
    report.add_ratios(runs)
    found = report.targets(runs, admission=ADMISSION_FLAG in flags_of(args))
    text = report.table(runs, LABELS, found)
    results = {
        "runs": runs,
        "targets": report.targets_json(found),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "output"},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_at_start": load, "load_average_at_end": os.getloadavg()[0]},
        "seconds": round(time.time() - started, 1),
        "table": text.splitlines(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(text)
    print(f"\nwritten to {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}"
          f" in {results['seconds']} s")


if __name__ == "__main__":
    main()
