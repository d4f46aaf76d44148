"""Server configuration from command-line flags, each defaulting to a `MODELOPS_*` environment variable.

The operator configures pods through the environment; people at a shell use flags. Both end in one
frozen `ServerConfig`.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

ENV_PREFIX = "MODELOPS_"
# The default --max-queue-depth, in full batches: one running while the next forms.
QUEUE_BATCHES = 2


@dataclass(frozen=True)
class ServerConfig:
    model_uri: str
    model_name: str = ""
    model_version: str = ""
    model_sha256: str = ""
    model_dir: str = ""
    host: str = "0.0.0.0"
    port: int = 8080
    grpc: bool = True
    grpc_port: int = 8081
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    batching: bool = True
    max_batch_size: int = 32  # the CRD's spec.serving.batching.maxBatchSize default
    max_batch_delay_ms: float = 2.0
    inline_below_ms: float = 0.1
    max_body_bytes: int = 8 * 1024 * 1024
    # None: two full batches (64 at the default batch size), one running and one forming, which keeps
    # the model busy; more only waits. Measured with 1,000 connections on a one-row MLP: 128 (four
    # batches) lost a fifth of the throughput and doubled p50 against 64 (benchmarks/inference.py).
    max_queue_depth: int | None = None
    # Longer than the 60 s ingress controllers keep idle upstream connections: a server that closes an
    # idle connection first races the proxy's next request on it, which the client sees as a 502.
    keep_alive_seconds: float = 75.0
    drain_seconds: float = 0.0
    graceful_timeout_seconds: float = 30.0
    load_attempts: int = 3
    # The training profile drift is counted against (`drift.py`); empty: reference.json beside the model.
    reference: str = ""
    log_level: str = "info"
    # The input sample (`sample.py`): its own port (0: off), the operator's bearer token (environment only,
    # never a flag, which `ps` would show; empty: off) and its bounds.
    replay_port: int = 8082
    replay_token: str = field(default="", repr=False)
    sample_rows: int = 256
    sample_bytes: int = 4 * 1024 * 1024
    # One request in ten: recording one costs a few microseconds on the event loop (checking its inputs, one
    # copy per input), so one in ten keeps the average under 1 % of a served request's CPU (~150 us for a
    # one-row MLP over HTTP); the 256 rows still refill within a few thousand requests of any traffic.
    sample_rate: float = 0.1
    # Test only: this fraction of inference requests is failed on purpose (HTTP 500, gRPC INTERNAL), so
    # tests can give a canary a known error rate (`faults.py`). 0: off; never set it in production.
    fault_error_rate: float = 0.0

    def __post_init__(self) -> None:
        if not self.model_uri:
            raise ValueError("a model URI is required (--model-uri or MODELOPS_MODEL_URI)")
        if not self.model_name:
            object.__setattr__(self, "model_name", default_model_name(self.model_uri))
        if self.model_sha256 and not re.fullmatch(r"[0-9a-fA-F]{64}", self.model_sha256):
            raise ValueError(f"--model-sha256 must be 64 hex digits, got {self.model_sha256!r}")
        object.__setattr__(self, "model_sha256", self.model_sha256.lower())
        if self.max_batch_size < 1:
            raise ValueError(f"--max-batch-size must be at least 1, got {self.max_batch_size}")
        if self.max_batch_delay_ms < 0:
            raise ValueError(f"--max-batch-delay-ms must not be negative, got {self.max_batch_delay_ms}")
        if self.keep_alive_seconds < 1:
            raise ValueError(f"--keep-alive-seconds must be at least 1, got {self.keep_alive_seconds}")
        if self.max_body_bytes < 1:
            raise ValueError(f"--max-body-bytes must be positive, got {self.max_body_bytes}")
        if self.max_queue_depth is None:
            object.__setattr__(self, "max_queue_depth", QUEUE_BATCHES * self.max_batch_size)
        if self.max_queue_depth < 0:
            raise ValueError(f"--max-queue-depth must be 0 (no limit) or more, got {self.max_queue_depth}")
        if self.grpc and not 0 < self.grpc_port < 65536:
            raise ValueError(f"--grpc-port must be a TCP port (1-65535), got {self.grpc_port}; "
                             "--grpc false turns gRPC off")
        if self.grpc and self.grpc_port == self.port:
            raise ValueError(f"--grpc-port and --port are both {self.port}; gRPC needs a port of its own")
        self._check_sample()
        if not 0 <= self.fault_error_rate <= 1:
            raise ValueError(f"--fault-error-rate must be a fraction from 0 to 1 (0: off), got {self.fault_error_rate}")

    def _check_sample(self) -> None:
        if not 0 <= self.replay_port < 65536:
            raise ValueError(f"--replay-port must be a TCP port (1-65535) or 0 (off), got {self.replay_port}")
        taken = {self.port: "--port", **({self.grpc_port: "--grpc-port"} if self.grpc else {})}
        if self.sampling and self.replay_port in taken:
            raise ValueError(f"--replay-port and {taken[self.replay_port]} are both {self.replay_port}; the input "
                             "sample needs a port of its own")
        if self.sample_rows < 1:
            raise ValueError(f"--sample-rows must be at least 1, got {self.sample_rows}")
        if self.sample_bytes < 1:
            raise ValueError(f"--sample-bytes must be positive, got {self.sample_bytes}")
        if not 0 <= self.sample_rate <= 1:
            raise ValueError(f"--sample-rate must be a fraction from 0 to 1, got {self.sample_rate}")

    @property
    def sampling(self) -> bool:
        """The input sample is kept and served only with a port and a token to guard it."""
        return self.replay_port != 0 and bool(self.replay_token)

    @property
    def sampling_off_reason(self) -> str:
        if self.replay_port == 0:
            return "--replay-port 0"
        return "" if self.replay_token else "no token"


def default_model_name(uri: str) -> str:
    """`models:/NAME/1` and `models:/NAME@alias` give NAME; a path gives its file stem; else "model"."""
    match = re.match(r"models:/([^/@]+)", uri)
    if match:
        return match.group(1)
    if "://" not in uri and ":/" not in uri:
        stem = Path(uri.rstrip("/")).stem
        if stem and stem != "model":
            return stem
    return "model"


def _env(name: str, default: str) -> str:
    return os.environ.get(ENV_PREFIX + name.upper(), default)


def _bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    if value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if value.strip().lower() in {"0", "false", "no", "off", ""}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def build_parser() -> argparse.ArgumentParser:
    d = ServerConfig.__dataclass_fields__
    p = argparse.ArgumentParser(
        prog="modelops-serve",
        description="Serve one ONNX model over the Open Inference Protocol v2 (and KServe v1) with "
        "onnxruntime. Every flag defaults to the MODELOPS_<FLAG> environment variable "
        "(e.g. MODELOPS_MODEL_URI); MLFLOW_TRACKING_URI selects the MLflow server for models:/ "
        "and runs:/ URIs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )

    def add(flag: str, help_: str, type_=str, **kw) -> None:
        field = flag.lstrip("-").replace("-", "_")
        default = _env(field, kw.pop("default", d[field].default))
        env = f"{ENV_PREFIX}{field.upper()}"
        p.add_argument(flag, type=type_, default=default, help=f"{help_} [env {env}]", **kw)

    add("--model-uri", "ONNX file, directory holding one, or MLflow URI (models:/NAME/VERSION, "
        "models:/NAME@ALIAS, runs:/RUN/PATH, mlflow-artifacts:/...)", default="")
    add("--model-name", "name served under /v2/models/NAME (default: from the URI)", default="")
    add("--model-version", "version reported and accepted under /versions/VERSION", default="")
    add("--model-sha256", "expected sha256 of the .onnx file; the model never becomes ready on mismatch",
        default="")
    add("--model-dir", "writable directory MLflow artifacts are downloaded into (default: a temp dir)",
        default="")
    add("--reference", "modelops.reference/v1 profile (path or MLflow URI) the served inputs are counted against "
        "for drift (default: reference.json beside the model file; none found: no drift series)", default="")
    add("--load-attempts", "tries to fetch the model before giving up (transient MLflow errors)", int)

    add("--host", "address to bind")
    add("--port", "port to listen on (HTTP)", int)
    add("--grpc", "also serve the v2 gRPC protocol and grpc.health.v1 (true/false)", _bool)
    add("--grpc-port", "port the gRPC protocol listens on", int)
    add("--intra-op-threads", "onnxruntime threads inside one operator (0: one per core)", int)
    add("--inter-op-threads", "onnxruntime threads across operators", int)
    add("--batching", "merge concurrent requests into one model run (true/false)", _bool)
    add("--max-batch-size", "most rows merged into one model run", int)
    add("--max-batch-delay-ms", "longest a request waits for others to join its batch", float)
    add("--inline-below-ms", "model runs expected to take less than this run on the event loop instead of "
        "a model thread (cheaper than the hand-off; 0: always a thread)", float)
    add("--max-body-bytes", "largest request body accepted (bigger gets 413)", int)
    add("--max-queue-depth", "most inference requests in the server at once (being read, waiting for a "
        f"batch or running); past it requests get 503 with Retry-After at once (0: no limit; default: "
        f"{QUEUE_BATCHES} x --max-batch-size)", int)
    add("--keep-alive-seconds", "how long an idle HTTP connection stays open; keep it above the upstream "
        "keep-alive of any proxy in front (ingress-nginx: 60 s)", float)
    add("--drain-seconds", "after SIGTERM, keep serving this long with readiness failing, so load "
        "balancers stop sending, before closing the listener", float)
    add("--graceful-timeout-seconds", "longest wait for in-flight requests after draining", float)
    add("--replay-port", "port serving the sample of recent inputs to the operator, with MODELOPS_REPLAY_TOKEN "
        "as its bearer token (0, or no token: no sample is kept)", int)
    add("--sample-rows", "most input rows the sample holds (oldest evicted)", int)
    add("--sample-bytes", "most bytes of input rows the sample holds (oldest evicted)", int)
    add("--sample-rate", "fraction of successful inference requests whose rows are recorded", float)
    add("--fault-error-rate", "TEST ONLY, never in production: fraction of inference requests answered with "
        "an injected HTTP 500 / gRPC INTERNAL, exactly (0.05: every 20th) (0: off)", float)
    add("--log-level", "debug logs one line per request", choices=["debug", "info", "warning", "error"])
    return p


def parse_args(argv: list[str] | None = None) -> ServerConfig:
    parser = build_parser()
    args = parser.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in fields(ServerConfig) if f.name != "replay_token"}
    values["replay_token"] = _env("replay_token", "")
    values["batching"] = _bool(values["batching"])
    values["grpc"] = _bool(values["grpc"])
    try:
        return ServerConfig(**values)
    except ValueError as e:
        parser.error(str(e))
        raise  # unreachable: parser.error exits
