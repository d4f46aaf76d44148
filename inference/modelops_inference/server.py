"""The HTTP server: the Open Inference Protocol v2 and KServe v1 over uvicorn, the lifespan that loads
the model in the background, per-request metrics and logs, and a uvicorn server that drains on SIGTERM
(readiness fails first, in-flight requests finish, then the process exits).

Inference requests take a lean ASGI path (`InferenceApp`), admitted first against `--max-queue-depth`
(`admission.py`); health, metadata and metrics are FastAPI routes, never refused for load, so probes keep
answering under overload. Both answer errors through the one table in `errors.py`. The gRPC protocol
(`grpc_server`) is a second listener on the same event loop, `ModelServer` and admission limit; `serve`
starts both (see `grpc_server`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelops_inference import drift, protocol
from modelops_inference.admission import Admission
from modelops_inference.batching import Answered, Batcher, Runner
from modelops_inference.config import ServerConfig
from modelops_inference.errors import (
    InferenceError,
    InvalidInput,
    MethodNotAllowed,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
    PayloadTooLarge,
    UnsupportedMediaType,
    status_code,
)
from modelops_inference.faults import FaultInjector
from modelops_inference.http import CoalescingHttpToolsProtocol
from modelops_inference.metrics import CONTENT_TYPE, Metrics
from modelops_inference.predictions import Predictions, not_countable_reason
from modelops_inference.runtime import PLATFORM, ModelRuntime
from modelops_inference.sample import InputSample
from modelops_registry.reference import InvalidReference

log = logging.getLogger("modelops_inference.server")
JSON = "application/json"
SERVER_NAME = "modelops-inference"
# A rejected request is logged at most this often (with the count since), not once per rejection: under
# overload a log line per request would cost more than the request.
OVERLOAD_LOG_SECONDS = 10.0


def server_version() -> str:
    try:
        return version("modelops-inference")
    except PackageNotFoundError:
        return "0.0.0"


def json_response(body: Any, status: int = 200) -> Response:
    return Response(body if isinstance(body, bytes) else protocol.dumps(body), status, media_type=JSON)


class Listener(Protocol):
    """A server of another protocol on this ModelServer (gRPC): `stop` refuses new requests and returns
    once those in flight are answered; calling it again waits for the same stop."""

    async def stop(self) -> None: ...


class ModelServer:
    """What the routes share: the model runtime, the runner (batching or not), admission, metrics, drain
    state. Every front end (HTTP here, gRPC beside it) submits to the same runner through the same
    admission limit."""

    def __init__(self, config: ServerConfig, runtime: ModelRuntime | None = None):
        self.config = config
        self.runtime = runtime or ModelRuntime(config)
        self.metrics = Metrics(config.model_name, config.model_version,
                               protocols=("http", "grpc") if config.grpc else ("http",))
        self.admission = Admission(config.max_queue_depth)
        self.metrics.track_admission(self.admission)
        self.runner: Runner | None = None
        # Recent inputs for the operator's replay (`sample.py`): created once the model's inputs are known,
        # and only when `--replay-port` and a token are set.
        self.sample: InputSample | None = None
        self.metrics.track_sample(lambda: len(self.sample) if self.sample is not None else 0)
        # The model's answers by class and score (`predictions.py`): created once its first output is known.
        self.predictions: Predictions | None = None
        self.metrics.track_predictions(lambda: self.predictions)
        # Its inputs counted per reference bin (`drift.py`): created once the model and its reference are known.
        self.drift: drift.Drift | None = None
        self.metrics.track_drift(lambda: self.drift)
        self.faults = FaultInjector(config.fault_error_rate) if config.fault_error_rate else None
        if self.faults is not None:
            log.warning(f"--fault-error-rate {config.fault_error_rate}: this fraction of inference requests is "
                        "answered with an injected HTTP 500 / gRPC INTERNAL (test only, never in production)",
                        extra={"event": "fault_injection_on", "fault_error_rate": config.fault_error_rate})
        self.draining = False
        self._overload_logged_at = -OVERLOAD_LOG_SECONDS
        self._overload_logged_count = 0
        # Stopped before the runner, so their in-flight requests still reach the model (HTTP's own are
        # answered before uvicorn runs the lifespan's shutdown).
        self.listeners: list[Listener] = []

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Loads the model in a daemon thread (so a hung download never blocks exit), then starts
        the runner; until both are done the server is live but not ready."""
        loop = asyncio.get_running_loop()
        loaded = asyncio.Event()

        def load() -> None:
            self.runtime.load()
            loop.call_soon_threadsafe(loaded.set)

        threading.Thread(target=load, name="model-load", daemon=True).start()
        await loaded.wait()
        if not self.runtime.ready:
            return
        self.predictions = self._make_predictions()
        self.drift = self._make_drift()
        runner = self._make_runner()
        await runner.start()
        c = self.config
        if c.sampling:
            self.sample = InputSample(self.runtime.inputs, c.sample_rows, c.sample_bytes, c.sample_rate)
        # Everything allocated so far (modules, the session) lives as long as the process: moving it out
        # of the collector's reach keeps full collections, and so the latency tail, short.
        gc.collect()
        gc.freeze()
        self.runner = runner
        self.metrics.model_loaded(self.runtime.sha256, PLATFORM, self.runtime.load_seconds)

    def _make_predictions(self) -> Predictions | None:
        first = self.runtime.outputs[0]
        reason = not_countable_reason(first)
        if reason is not None:
            log.info(f"predictions not counted: {reason}", extra={"event": "predictions_not_counted"})
            return None
        return Predictions(first)

    def _make_drift(self) -> drift.Drift | None:
        """The drift counter, or None (one log line saying why): no reference found, or one that is invalid or
        does not fit the model. Never an error: serving must not fail for a monitoring file."""
        path, note = self.runtime.reference_path, self.runtime.reference_note
        if path is None:
            log.info(f"drift not counted: {note}", extra={"event": "drift_off", "reason": note})
            return None
        try:
            reference = drift.read_reference(path)
        except InvalidReference as e:
            reason = f"{note}: {e}"
        else:
            first = self.runtime.inputs[0]
            reason = drift.not_countable_reason(first, reference)
            if reason is None:
                log.info(f"drift counted: input '{first.name}', {len(reference.features)} features from {note}",
                         extra={"event": "drift_on", "reference": note, "features": len(reference.features)})
                return drift.Drift(reference, first)
            reason = f"{note}: {reason}"
        log.warning(f"drift not counted: {reason}", extra={"event": "drift_off", "reason": reason})
        return None

    def _answered(self) -> Answered | None:
        """What the runner calls once per model run with the rows it answered: the prediction and drift counters."""
        predictions, counted = self.predictions, self.drift
        if predictions is not None and counted is not None:
            def both(inputs, outputs):
                predictions.observe(outputs)
                counted.observe(inputs)
            return both
        if predictions is not None:
            return lambda inputs, outputs: predictions.observe(outputs)
        if counted is not None:
            return lambda inputs, outputs: counted.observe(inputs)
        return None

    def _make_runner(self) -> Runner:
        c = self.config
        inline_below_s = c.inline_below_ms / 1000
        answered = self._answered()
        reason = self.runtime.unbatchable_reason
        if c.batching and reason is None:
            return Batcher(self.runtime.run, c.max_batch_size, c.max_batch_delay_ms / 1000,
                           self.metrics.observe_run, inline_below_s=inline_below_s, answered=answered)
        if c.batching:
            log.warning(f"batching off: {reason}", extra={"event": "batching_unsupported"})
        return Runner(self.runtime.run, self.metrics.observe_run, inline_below_s=inline_below_s, answered=answered)

    def drain(self) -> None:
        """Fail readiness from now on; requests keep being served until the listener closes."""
        if not self.draining:
            self.draining = True
            self.metrics.model_unready()
            log.info("draining: readiness now fails", extra={"event": "draining"})

    async def stop(self) -> None:
        self.drain()
        for listener in self.listeners:
            await listener.stop()
        if self.runner is not None:
            await self.runner.stop()
            self.runner = None
        self.runtime.close()

    # --- state the routes ask for ----------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.runner is not None and self.runtime.ready and not self.draining

    @property
    def not_ready_reason(self) -> str:
        if self.draining:
            return "server is shutting down"
        if not self.runtime.ready:
            return self.runtime.reason
        return "" if self.runner is not None else "model is warming up"

    def check_model(self, name: str, version: str | None) -> None:
        if name != self.config.model_name:
            raise ModelNotFound(f"model '{name}' not found; this server serves '{self.config.model_name}'")
        if version is not None and version != self.config.model_version:
            served = self.config.model_version or "(no version set)"
            raise ModelNotFound(f"version '{version}' of model '{name}' not found; serving version {served}")

    def note_overload(self) -> None:
        """Logs that requests are being refused: the first time, then at most every OVERLOAD_LOG_SECONDS."""
        now = time.monotonic()
        if now - self._overload_logged_at >= OVERLOAD_LOG_SECONDS:
            rejected = self.admission.rejected
            log.warning("at capacity: refusing inference requests (HTTP 503 with Retry-After, gRPC UNAVAILABLE)",
                        extra={"event": "overloaded", "limit": self.admission.limit,
                               "rejected_since_last_log": rejected - self._overload_logged_count,
                               "rejected_total": rejected})
            self._overload_logged_at, self._overload_logged_count = now, rejected

    async def infer(self, runner: Runner, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The one path every front end's inference takes: an injected fault when `--fault-error-rate` says
        so (before the run, so its rows are never counted as answered), the run, then (it succeeded, so these
        are inputs the model accepts) an offer to the input sample."""
        if self.faults is not None and self.faults.due():
            raise self.faults.fault()
        outputs = await runner.submit(inputs)
        if self.sample is not None:
            self.sample.offer(inputs)
        return outputs

    def loaded_runner(self) -> Runner:
        if self.runner is None:
            raise ModelNotReady(f"model '{self.config.model_name}' is not ready: {self.not_ready_reason}")
        return self.runner


INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
PREDICT_PATH = re.compile(r"^/v1/models/([^/]+):predict$")
JSON_HEADERS = [(b"content-type", JSON.encode())]
BINARY_HEADERS = [(b"content-type", b"application/octet-stream")]


class InferenceApp:
    """The outermost ASGI app. Inference requests (v2 infer, v1 predict) are served here directly: the
    hot path skips FastAPI's routing and dependency machinery, which otherwise costs more than parsing,
    running the model and encoding the answer together. Everything else (health, metadata, metrics,
    lifespan) goes to the FastAPI app. Every request is counted and timed by endpoint and status, and
    logged at debug level (never its payload)."""

    def __init__(self, api: FastAPI, server: ModelServer):
        self.api = api
        self.server = server
        self.state = api.state
        overloaded = protocol.error_body(str(server.admission.overloaded()))
        self._overloaded_body = overloaded
        self._overloaded_headers = [*JSON_HEADERS, (b"content-length", str(len(overloaded)).encode()),
                                    (b"retry-after", str(Overloaded.retry_after_seconds).encode())]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] == "/metrics":
            return await self.api(scope, receive, send)
        started = time.perf_counter()
        path = scope["path"]
        if (match := INFER_PATH.match(path)) is not None:
            endpoint, answer = "infer", self._inference(scope, receive, send, match, v2=True)
        elif (match := PREDICT_PATH.match(path)) is not None:
            endpoint, answer = "predict", self._inference(scope, receive, send, match, v2=False)
        else:
            endpoint, answer = "", self._api(scope, receive, send)
        # Counted even when the request ends in an exception: a task uvicorn cancels (its graceful timeout
        # passed) as 499, like a gRPC call cancelled, anything else as the 500 the client got.
        status = 500
        try:
            status = await answer
        except asyncio.CancelledError:
            status = 499
            raise
        finally:
            if not endpoint:
                route = scope.get("route")
                endpoint = getattr(route, "name", None) or "unmatched"
            self._observe(scope, endpoint, status, started)

    def _observe(self, scope, endpoint: str, status: int, started: float) -> None:
        seconds = time.perf_counter() - started
        self.server.metrics.observe_request(endpoint, status, seconds)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("request", extra={"event": "request", "method": scope["method"], "path": scope["path"],
                                        "endpoint": endpoint, "status": status,
                                        "duration_ms": round(seconds * 1000, 3)})

    async def _api(self, scope, receive, send) -> int:
        status = 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.api(scope, receive, send_status)
        return status

    async def _inference(self, scope, receive, send, match: re.Match, v2: bool) -> int:
        admission = self.server.admission
        if scope["method"] == "POST" and not admission.try_admit():
            return await self._refuse_overloaded(send)
        try:
            return await self._admitted_inference(scope, receive, send, match, v2)
        finally:
            if scope["method"] == "POST":
                admission.release()

    async def _refuse_overloaded(self, send) -> int:
        """503 with Retry-After before the body is read: the whole cost of a request the server has no
        room for is this, so overload does not starve the requests it admitted."""
        self.server.note_overload()
        await send({"type": "http.response.start", "status": 503, "headers": self._overloaded_headers})
        await send({"type": "http.response.body", "body": self._overloaded_body})
        return 503

    async def _admitted_inference(self, scope, receive, send, match: re.Match, v2: bool) -> int:
        headers = JSON_HEADERS
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowed(f"{scope['method']} {scope['path']}: Method Not Allowed; use POST")
            if v2:
                answer = await infer_v2(self.server, match.group(1), match.group(2), scope, receive)
                body = answer.body
                if answer.header_length is not None:
                    headers = [*BINARY_HEADERS, (protocol.HEADER_LENGTH, str(answer.header_length).encode())]
            else:
                body = await predict_v1(self.server, match.group(1), scope, receive)
            status = 200
        except InferenceError as error:
            status = status_code(error)
            log_error(scope["path"], status, error)
            body = protocol.error_body(str(error))
        except Exception as error:  # noqa: BLE001 - answered as a 500 and logged with its traceback
            status = 500
            log.exception("unexpected error", extra={"event": "request_error", "path": scope["path"],
                                                     "status": 500})
            body = protocol.error_body(f"internal error: {type(error).__name__}")
        headers = [*headers, (b"content-length", str(len(body)).encode())]
        if status == 405:
            headers.append((b"allow", b"POST"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return status


def log_error(path: str, status: int, error: Exception, **fields: Any) -> None:
    log.log(logging.ERROR if status >= 500 else logging.WARNING, str(error),
            extra={"event": "request_error", "path": path, "status": status, "error_type": type(error).__name__,
                   **fields})


def header(scope, name: bytes) -> bytes | None:
    """The first value of request header `name` (lower case), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def read_body(scope, receive, limit: int) -> bytes:
    """The request body, refusing (413) anything over `limit` bytes: before reading it when its length
    is declared, and as soon as the limit is passed when it is streamed. A compressed body (415) is
    refused before reading too: it would otherwise fail later as "not valid JSON"."""
    for key, value in scope["headers"]:
        if key == b"content-length" and value.isdigit() and int(value) > limit:
            raise PayloadTooLarge(f"request body is {int(value)} bytes; the limit is {limit} (--max-body-bytes)")
        if key == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            raise UnsupportedMediaType(f"Content-Encoding {value.decode('latin-1')!r} is not supported; send "
                                       "the body uncompressed")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidInput("client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes (--max-body-bytes)")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def infer_v2(server: ModelServer, name: str, version: str | None, scope,
                   receive) -> protocol.EncodedResponse:
    """A v2 inference; the body is JSON, or (with Inference-Header-Content-Length) a JSON header followed
    by the binary tensor data it sizes."""
    server.check_model(name, version)
    runner = server.loaded_runner()
    runtime = server.runtime
    runner.arriving += 1
    try:
        body = await read_body(scope, receive, server.config.max_body_bytes)
        header_length = header(scope, protocol.HEADER_LENGTH)
        binary = b""
        if header_length is not None:
            body, binary = protocol.split_binary_body(body, header_length)
        parsed = protocol.parse_v2_request(protocol.parse_json(body), runtime.inputs, runtime.outputs, binary)
    finally:
        runner.arriving -= 1
    outputs = await server.infer(runner, parsed.inputs)
    return protocol.v2_response(name, server.config.model_version, parsed, outputs)


async def predict_v1(server: ModelServer, name: str, scope, receive) -> bytes:
    server.check_model(name, None)
    runner = server.loaded_runner()
    if header(scope, protocol.HEADER_LENGTH) is not None:
        raise InvalidInput("Inference-Header-Content-Length: the binary tensor data extension belongs to v2 "
                           "(/v2/models/NAME/infer); a v1 :predict body is JSON {\"instances\": [...]}")
    runner.arriving += 1
    try:
        body = await read_body(scope, receive, server.config.max_body_bytes)
        inputs = protocol.parse_v1_request(protocol.parse_json(body), server.runtime.inputs)
    finally:
        runner.arriving -= 1
    return protocol.v1_response(await server.infer(runner, inputs))


def create_app(config: ServerConfig, server: ModelServer | None = None) -> InferenceApp:
    """The ASGI app: `InferenceApp` in front of the FastAPI app (reachable as `.api`)."""
    server = server or ModelServer(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        starting = asyncio.create_task(server.start())
        try:
            yield
        finally:
            if not starting.done():
                starting.cancel()
            await server.stop()

    api = FastAPI(title=SERVER_NAME, version=server_version(), lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    api.state.server = server
    _add_error_handlers(api)
    _add_health_routes(api, server)
    _add_v2_routes(api, server)
    _add_v1_routes(api, server)
    return InferenceApp(api, server)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InferenceError)
    async def inference_error(request: Request, error: InferenceError) -> Response:
        status = status_code(error)
        log_error(request.url.path, status, error)
        return json_response(protocol.error_body(str(error)), status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        message = f"{request.method} {request.url.path}: {error.detail}"
        log.warning(message, extra={"event": "request_error", "path": request.url.path,
                                    "status": error.status_code})
        return json_response(protocol.error_body(message), error.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Response:
        log.exception("unexpected error", extra={"event": "request_error", "path": request.url.path,
                                                 "status": 500})
        return json_response(protocol.error_body(f"internal error: {type(error).__name__}"), 500)


def _add_health_routes(app: FastAPI, server: ModelServer) -> None:
    @app.get("/v2/health/live", name="health_live")
    async def health_live() -> Response:
        return json_response({"live": True})

    @app.get("/v2/health/ready", name="health_ready")
    async def health_ready() -> Response:
        return _readiness(server)

    @app.get("/metrics", name="metrics")
    async def metrics() -> Response:
        return Response(server.metrics.exposition(), media_type=CONTENT_TYPE)


def _readiness(server: ModelServer, **fields: str) -> Response:
    """`fields` with ready true, or (400) false and why: the server's and a model's readiness alike."""
    if server.ready:
        return json_response({**fields, "ready": True})
    return json_response({**fields, "ready": False, "reason": server.not_ready_reason}, 400)


def _model_ready(server: ModelServer, name: str, version: str | None) -> Response:
    server.check_model(name, version)
    return _readiness(server, name=name)


def _model_metadata(server: ModelServer, name: str, version: str | None) -> Response:
    server.check_model(name, version)
    server.loaded_runner()
    runtime = server.runtime
    return json_response({
        "name": name,
        "versions": [server.config.model_version] if server.config.model_version else [],
        "platform": PLATFORM,
        "inputs": [s.metadata() for s in runtime.inputs],
        "outputs": [s.metadata() for s in runtime.outputs],
    })


def _add_v2_routes(app: FastAPI, server: ModelServer) -> None:
    @app.get("/v2", name="server_metadata")
    async def server_metadata() -> Response:
        return json_response({"name": SERVER_NAME, "version": server_version(),
                              "extensions": list(protocol.EXTENSIONS)})

    _add_model_routes(app, server, "", "model_metadata", _model_metadata)
    _add_model_routes(app, server, "/ready", "model_ready", _model_ready)


def _add_model_routes(app: FastAPI, server: ModelServer, suffix: str, route_name: str,
                      handler: Callable[[ModelServer, str, str | None], Response]) -> None:
    """`/v2/models/{name}<suffix>` and its `/v2/models/{name}/versions/{version}<suffix>` twin, one route
    name (the metrics label) for both, answered by `handler` with version None for the first."""

    async def model(name: str) -> Response:
        return handler(server, name, None)

    async def model_version(name: str, version: str) -> Response:
        return handler(server, name, version)

    app.get(f"/v2/models/{{name}}{suffix}", name=route_name)(model)
    app.get(f"/v2/models/{{name}}/versions/{{version}}{suffix}", name=route_name)(model_version)


def _add_v1_routes(app: FastAPI, server: ModelServer) -> None:
    @app.get("/v1/models", name="v1_models")
    async def v1_models() -> Response:
        return json_response({"models": [server.config.model_name]})

    @app.get("/v1/models/{name}", name="v1_model_ready")
    async def v1_model_ready(name: str) -> Response:
        return _model_ready(server, name, None)


class SideListener(Listener, Protocol):
    """A listener `DrainingServer` starts before HTTP and stops beside it (gRPC, the input sample):
    `start` raises OSError when it cannot listen; `stop(grace=0)` cuts a stop short. `name` prefixes its
    log events."""

    name: str

    async def start(self) -> None: ...

    async def stop(self, grace: float | None = None) -> None: ...


class DrainingServer(uvicorn.Server):
    """uvicorn, but the first SIGTERM/SIGINT only starts draining: readiness fails at once, requests
    are still served for `drain_seconds` (while load balancers notice), then uvicorn's own graceful
    shutdown closes the listener and waits for in-flight requests. A second signal exits at once.
    Exits with status 0 after a graceful shutdown instead of re-raising the signal.

    Side listeners (gRPC, the input sample) listen before HTTP does (a busy port stops the process before
    anything is served) and stop at the same moment as uvicorn's listener, within the same graceful
    timeout."""

    def __init__(self, config: uvicorn.Config, model_server: ModelServer, drain_seconds: float,
                 side_listeners: list[SideListener] | None = None):
        super().__init__(config)
        self.model_server = model_server
        self.drain_seconds = drain_seconds
        self.side_listeners = list(side_listeners or [])
        self._drain_deadline: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        for listener in self.side_listeners:
            try:
                await listener.start()
            except OSError as e:
                log.error(str(e), extra={"event": f"{listener.name}_listen_failed"})
                sys.exit(1)
            self.model_server.listeners.append(listener)
        await super().startup(sockets)

    async def shutdown(self, sockets=None) -> None:
        stopped = [asyncio.ensure_future(listener.stop()) for listener in self.side_listeners]
        await super().shutdown(sockets)
        if self.force_exit:
            for listener in self.side_listeners:
                await listener.stop(grace=0)
        for stop in stopped:
            await stop

    def handle_exit(self, sig: int, frame) -> None:
        if self._drain_deadline is None:
            log.info("received %s", signal.Signals(sig).name, extra={"event": "signal", "signal": sig})
            self.model_server.drain()
            self._drain_deadline = time.monotonic() + self.drain_seconds
        else:
            self.should_exit = True
            self.force_exit = True
            if self._loop is not None:
                # uvicorn stops waiting for HTTP requests at once; cut the side listeners' calls short too,
                # even while the lifespan's shutdown waits for them (a signal handler cannot await: schedule it)
                for listener in self.side_listeners:
                    self._loop.call_soon_threadsafe(asyncio.ensure_future, listener.stop(grace=0))

    async def on_tick(self, counter: int) -> bool:
        if self._drain_deadline is not None and time.monotonic() >= self._drain_deadline:
            self.should_exit = True
        return await super().on_tick(counter)


def serve(config: ServerConfig) -> None:
    server = ModelServer(config)
    app = create_app(config, server)
    side_listeners: list[SideListener] = []
    if config.grpc:
        # Imported only when used: grpc and protobuf cost start-up time a server without gRPC need not pay.
        from modelops_inference.grpc_server import GrpcServer

        side_listeners.append(GrpcServer(server))
    if config.sampling:
        from modelops_inference.sample_server import SampleListener

        side_listeners.append(SampleListener(server))
    else:
        log.info(f"input sample off: {config.sampling_off_reason}", extra={"event": "sample_off"})
    uv_config = uvicorn.Config(
        app, host=config.host, port=config.port, log_config=None, access_log=False,
        http=CoalescingHttpToolsProtocol, proxy_headers=False,
        timeout_graceful_shutdown=config.graceful_timeout_seconds, timeout_keep_alive=config.keep_alive_seconds,
        server_header=False,
        log_level=config.log_level,
    )
    DrainingServer(uv_config, server, config.drain_seconds, side_listeners).run()
