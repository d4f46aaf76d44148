"""The Open Inference Protocol v2 over gRPC (`inference.GRPCInferenceService`) and the standard health
service (`grpc.health.v1.Health`), served beside the HTTP API.

Design: one process, one event loop, one `ModelServer`. uvicorn and grpc.aio are two listeners on the same
asyncio loop (uvloop), so a gRPC request reaches the very `Runner` HTTP requests reach and the two batch
together into the same `session.run`s: one model session, one model thread, and no locks, since the
runner's queue and futures belong to that loop. A gRPC server in another thread or process would need a
cross-thread queue or a second session (twice the memory) and would batch apart. The price is the one HTTP
already pays: whatever holds the loop delays requests of both protocols.

Parity with HTTP: readiness is `ModelServer.ready` for ServerReady, ModelReady and the health service
alike; errors come from the one table in `errors.py` (the HTTP status mapped to a gRPC code, the message in
the same words HTTP sends); metrics are the same series with `protocol="grpc"`; error lines and debug
request lines are the same JSON logs. ModelInfer calls count against the same --max-queue-depth as HTTP
inferences (`ModelServer.admission`); past it they are refused at once with UNAVAILABLE and
grpc-retry-pushback-ms, as HTTP answers 503 with Retry-After. A message larger than --max-body-bytes is
refused by grpc with RESOURCE_EXHAUSTED, as HTTP answers 413. Methods of Triton's extensions (model
repository, statistics, streaming, shared memory, trace) answer UNIMPLEMENTED.

Lifecycle (driven by `server.DrainingServer`): the listener starts before HTTP's, so a busy port stops the
process before it serves anything; on SIGTERM readiness fails at once (ServerReady false, health
NOT_SERVING) while requests are still served for --drain-seconds; then `stop` refuses new calls
(UNAVAILABLE) and gives those in flight --graceful-timeout-seconds, at the same moment and with the same
timeout as uvicorn's listener, and the runner stops only after both.

Handlers receive the request's bytes and parse them here, so bytes that are not the message are
INVALID_ARGUMENT naming it (grpc's own deserializer would answer INTERNAL). A ModelInfer call counts as
arriving for the batcher (`Runner.arriving`, as an HTTP request does while its body is read) from the
moment grpc accepts it until its handler starts (`ArrivingInterceptor`): grpc reads the message in
between, and a batcher that saw nothing arriving would run every call alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelops_inference import grpc_protocol as wire
from modelops_inference.errors import InferenceError, Overloaded, grpc_code, status_code
from modelops_inference.protocol import EXTENSIONS
from modelops_inference.runtime import PLATFORM
from modelops_inference.server import SERVER_NAME, ModelServer, log_error, server_version

log = logging.getLogger("modelops_inference.grpc")

# grpc.health.v1 service names: readiness under the empty name (what Kubernetes' grpc probe and gRPC
# load balancers ask by default) and under the inference service's name; liveness under its own, for a
# Kubernetes liveness probe, which must not restart a pod that is still loading its model.
LIVENESS_SERVICE = "liveness"
READINESS_SERVICES = ("", wire.SERVICE)
WATCH_INTERVAL_S = 1.0
INFER_METHOD = f"/{wire.SERVICE}/ModelInfer"
# How long a started ModelInfer call counts as arriving at most, should its handler never run.
ARRIVAL_TIMEOUT_S = 1.0

Handler = Callable[[Message], Awaitable[Message]]


class GrpcServer:
    """The gRPC listener on a ModelServer: both services, started and stopped with the HTTP listener."""

    name = "grpc"

    def __init__(self, server: ModelServer, host: str | None = None, port: int | None = None):
        self.server = server
        self.host = server.config.host if host is None else host
        self.port = server.config.grpc_port if port is None else port
        self.stopping = asyncio.Event()
        self._grpc: grpc.aio.Server | None = None
        self._stopped: asyncio.Future | None = None

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def start(self) -> None:
        """Listens on `address` (port 0: any free port, then kept in `port`); raises OSError if it cannot."""
        listener = grpc.aio.server(interceptors=(ArrivingInterceptor(self.server),), options=[
            ("grpc.max_receive_message_length", self.server.config.max_body_bytes),
            ("grpc.max_send_message_length", -1),
            # grpc sets SO_REUSEPORT by default, so a second server (another modelops-serve) could bind the
            # same port and take some of its connections: a busy port must fail instead.
            ("grpc.so_reuseport", 0),
        ])
        listener.add_generic_rpc_handlers((inference_handler(self.server),))
        health_pb2_grpc.add_HealthServicer_to_server(HealthServicer(self.server, self.stopping), listener)
        try:
            bound = listener.add_insecure_port(self.address)
        except RuntimeError:
            bound = 0
        if not bound:
            raise OSError(f"cannot listen for gRPC on {self.address} (is the port in use?); choose another "
                          "--grpc-port (MODELOPS_GRPC_PORT) or turn gRPC off with --grpc false")
        self.port = bound
        await listener.start()
        self._grpc = listener
        log.info("gRPC listening on %s", self.address, extra={"event": "grpc_listening", "port": bound})

    async def stop(self, grace: float | None = None) -> None:
        """Refuses new calls at once and waits up to `grace` seconds (default --graceful-timeout-seconds)
        for those in flight, then cancels them. Later calls wait for the same stop; one with a `grace`
        (a second signal: 0) cuts it short."""
        if self._grpc is None:
            return
        self.stopping.set()  # ends health Watch streams, which would otherwise hold the stop to its timeout
        if self._stopped is None:
            default = self.server.config.graceful_timeout_seconds
            self._stopped = asyncio.ensure_future(self._grpc.stop(default if grace is None else grace))
        elif grace is not None:
            await self._grpc.stop(grace)
        await asyncio.shield(self._stopped)


class ArrivingInterceptor(grpc.aio.ServerInterceptor):
    """Counts each ModelInfer call in `Runner.arriving` from its start until its handler starts, when the
    handler's own submit takes over (no await between the two). A call whose handler never runs (its
    message never came whole) is let go after ARRIVAL_TIMEOUT_S, so the count cannot leak; the batcher
    waits at most --max-batch-delay-ms for arrivals in any case."""

    def __init__(self, server: ModelServer):
        self.server = server

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        runner = self.server.runner
        if runner is None or handler is None or details.method != INFER_METHOD:
            return handler
        runner.arriving += 1
        pending = True

        def arrived() -> None:
            nonlocal pending
            if pending:
                pending = False
                runner.arriving -= 1

        timer = asyncio.get_running_loop().call_later(ARRIVAL_TIMEOUT_S, arrived)
        answer = handler.unary_unary

        async def infer(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
            timer.cancel()
            arrived()
            return await answer(data, context)

        return handler._replace(unary_unary=infer)


class InferenceService:
    """The six v2 methods over the shared ModelServer: each takes its request message and returns the
    response message, or raises an InferenceError the caller answers through the error table."""

    def __init__(self, server: ModelServer):
        self.server = server

    async def server_live(self, request: Message) -> Message:
        return wire.ServerLiveResponse(live=True)

    async def server_ready(self, request: Message) -> Message:
        return wire.ServerReadyResponse(ready=self.server.ready)

    async def model_ready(self, request: Message) -> Message:
        self.server.check_model(request.name, request.version or None)
        return wire.ModelReadyResponse(ready=self.server.ready)

    async def server_metadata(self, request: Message) -> Message:
        return wire.ServerMetadataResponse(name=SERVER_NAME, version=server_version(),
                                           extensions=EXTENSIONS)

    async def model_metadata(self, request: Message) -> Message:
        server = self.server
        server.check_model(request.name, request.version or None)
        server.loaded_runner()
        return wire.model_metadata(request.name, server.config.model_version, PLATFORM, server.runtime.inputs,
                                   server.runtime.outputs)

    async def model_infer(self, request: Message) -> Message:
        """Admitted first, against the --max-queue-depth HTTP inferences share, as HTTP admits before it
        reads a body: a full server answers `Overloaded` at once, before any other work."""
        server = self.server
        with server.admission.admitted():
            server.check_model(request.model_name, request.model_version or None)
            runner = server.loaded_runner()
            runtime = server.runtime
            parsed = wire.parse_infer_request(request, runtime.inputs, runtime.outputs)
            outputs = await server.infer(runner, parsed.inputs)
            return wire.infer_response(request.model_name, server.config.model_version, parsed, outputs,
                                       raw=bool(request.raw_input_contents))


def inference_handler(server: ModelServer) -> grpc.GenericRpcHandler:
    """`inference.GRPCInferenceService`, each method counted under the endpoint name HTTP uses for it."""
    service = InferenceService(server)
    methods: dict[str, tuple[str, type[Message], Handler]] = {
        "ServerLive": ("health_live", wire.ServerLiveRequest, service.server_live),
        "ServerReady": ("health_ready", wire.ServerReadyRequest, service.server_ready),
        "ModelReady": ("model_ready", wire.ModelReadyRequest, service.model_ready),
        "ServerMetadata": ("server_metadata", wire.ServerMetadataRequest, service.server_metadata),
        "ModelMetadata": ("model_metadata", wire.ModelMetadataRequest, service.model_metadata),
        "ModelInfer": ("infer", wire.ModelInferRequest, service.model_infer),
    }
    return grpc.method_handlers_generic_handler(wire.SERVICE, {
        method: grpc.unary_unary_rpc_method_handler(_answered(server, method, endpoint, cls, handler))
        for method, (endpoint, cls, handler) in methods.items()
    })


def _answered(server: ModelServer, method: str, endpoint: str, request_class: type[Message], handler: Handler):
    """The method as grpc calls it: request bytes in, response bytes or an error status out, counted, timed
    and logged like an HTTP request."""
    path = f"/{wire.SERVICE}/{method}"

    async def answer(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(wire.parse_message(request_class, data))
            status = 200
            return response.SerializeToString()
        except InferenceError as error:
            status = status_code(error)
            if isinstance(error, Overloaded):
                server.note_overload()  # logged now and then, not once per refusal, as over HTTP
            else:
                log_error(path, status, error, protocol="grpc", grpc_code=grpc_code(status))
            await abort(context, status, str(error), error.retry_after_seconds)
        except asyncio.CancelledError:
            status = 499  # the client went away or its deadline passed
            raise
        except Exception as error:  # noqa: BLE001 - answered as INTERNAL and logged with its traceback
            log.exception("unexpected error", extra={"event": "request_error", "path": path, "status": 500,
                                                     "protocol": "grpc", "grpc_code": "INTERNAL"})
            await abort(context, 500, f"internal error: {type(error).__name__}", None)
        finally:
            observe(server, path, endpoint, status, started)

    return answer


async def abort(context: grpc.aio.ServicerContext, status: int, message: str, retry_after: float | None) -> None:
    """Ends the call with the gRPC code of `status`; an error that knows when a retry may succeed says so
    in grpc-retry-pushback-ms, which gRPC's own retry policy honours."""
    metadata = () if retry_after is None else (("grpc-retry-pushback-ms", str(round(retry_after * 1000))),)
    await context.abort(grpc.StatusCode[grpc_code(status)], message, trailing_metadata=metadata)


def observe(server: ModelServer, path: str, endpoint: str, status: int, started: float) -> None:
    """Counts and times one call as HTTP does its requests (by the HTTP status of its outcome), and logs
    it at debug level."""
    seconds = time.perf_counter() - started
    server.metrics.observe_request(endpoint, status, seconds, protocol="grpc")
    if log.isEnabledFor(logging.DEBUG):
        code = "OK" if status == 200 else grpc_code(status)
        log.debug("request", extra={"event": "request", "protocol": "grpc", "method": "POST", "path": path,
                                    "endpoint": endpoint, "status": status, "grpc_code": code,
                                    "duration_ms": round(seconds * 1000, 3)})


class HealthServicer(health_pb2_grpc.HealthServicer):
    """grpc.health.v1.Health over the ModelServer's own state, read at every call (never a copy to keep in
    step): readiness services SERVING exactly when HTTP readiness answers 200, `liveness` SERVING while
    the process answers at all."""

    def __init__(self, server: ModelServer, stopping: asyncio.Event):
        self.server = server
        self.stopping = stopping

    def status(self, service: str) -> int | None:
        if service == LIVENESS_SERVICE:
            return health_pb2.HealthCheckResponse.SERVING
        if service in READINESS_SERVICES:
            ready = self.server.ready
            return health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        return None

    async def Check(self, request, context):  # noqa: N802 - the protocol's method name
        started = time.perf_counter()
        status = self.status(request.service)
        observe(self.server, "/grpc.health.v1.Health/Check", "health_check", 200 if status is not None else 404,
                started)
        if status is None:
            known = ", ".join(repr(s) for s in (*READINESS_SERVICES, LIVENESS_SERVICE))
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"unknown service {request.service!r}; this server reports {known}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request, context):  # noqa: N802 - the protocol's method name
        """The status now and at every change (checked each second) until the listener stops."""
        last = None
        while not self.stopping.is_set():
            status = self.status(request.service)
            if status is None:
                status = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            try:
                await asyncio.wait_for(self.stopping.wait(), WATCH_INTERVAL_S)
            except TimeoutError:
                pass
