"""The input sample's own listener: `GET /v2/models/{name}/sample` on `--replay-port`, for the operator only.

A port of its own, never the inference port (8080) or gRPC (8081), so a Service or Ingress that exposes
those never exposes recorded inputs; and a bearer token (MODELOPS_REPLAY_TOKEN, compared in constant time)
on every request. uvicorn again, on the same event loop as the inference listeners (the ring belongs to
that loop), started before them and stopped beside them by `server.DrainingServer`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re

import uvicorn

from modelops_inference import protocol
from modelops_inference.errors import (
    InferenceError,
    MethodNotAllowed,
    ModelNotReady,
    RouteNotFound,
    Unauthorized,
    status_code,
)
from modelops_inference.http import CoalescingHttpToolsProtocol
from modelops_inference.server import JSON_HEADERS, ModelServer, log_error

log = logging.getLogger("modelops_inference.sample")

SAMPLE_PATH = re.compile(r"^/v2/models/([^/]+)/sample$")


class SampleApp:
    """ASGI app answering the one route; everything else is a JSON 404."""

    def __init__(self, server: ModelServer):
        self.server = server
        self._token = f"Bearer {server.config.replay_token}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return  # lifespan is off; websockets are not served
        try:
            body, status = protocol.dumps(self._answer(scope)), 200
        except InferenceError as error:
            status = status_code(error)
            log_error(scope["path"], status, error, listener="sample")
            body = protocol.error_body(str(error))
        headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="modelops-sample"'))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _answer(self, scope) -> dict:
        match = SAMPLE_PATH.match(scope["path"])
        if match is None:
            raise RouteNotFound(f"{scope['method']} {scope['path']}: Not Found; this port serves only "
                                "GET /v2/models/{name}/sample")
        if not self._authorized(scope):
            raise Unauthorized("missing or wrong bearer token (Authorization: Bearer <MODELOPS_REPLAY_TOKEN>)")
        if scope["method"] != "GET":
            raise MethodNotAllowed(f"{scope['method']} {scope['path']}: Method Not Allowed; use GET")
        self.server.check_model(match.group(1), None)
        sample = self.server.sample
        if sample is None:
            raise ModelNotReady(f"model '{self.server.config.model_name}' is not ready: "
                                f"{self.server.not_ready_reason}")
        return sample.replay_set()

    def _authorized(self, scope) -> bool:
        given = b""
        for key, value in scope["headers"]:
            if key == b"authorization":
                given = value
                break
        return hmac.compare_digest(given, self._token)


class SampleListener:
    """The listener on a ModelServer: started before the inference listeners, stopped with them."""

    name = "sample"

    def __init__(self, server: ModelServer, host: str | None = None, port: int | None = None):
        self.server = server
        self.host = server.config.host if host is None else host
        self.port = server.config.replay_port if port is None else port
        self._uvicorn: uvicorn.Server | None = None
        self._stopped: asyncio.Future | None = None

    async def start(self) -> None:
        """Listens (port 0: any free port, then kept in `port`); raises OSError if it cannot."""
        c = self.server.config
        config = uvicorn.Config(SampleApp(self.server), host=self.host, port=self.port, lifespan="off",
                                log_config=None, access_log=False, http=CoalescingHttpToolsProtocol,
                                proxy_headers=False, server_header=False, log_level=c.log_level,
                                timeout_graceful_shutdown=c.graceful_timeout_seconds,
                                timeout_keep_alive=c.keep_alive_seconds)
        config.load()
        listener = uvicorn.Server(config)
        listener.lifespan = config.lifespan_class(config)
        try:
            await listener.startup()
        except SystemExit:  # uvicorn's answer to a port it cannot bind (it has logged why)
            raise OSError(f"cannot listen for the input sample on {self.host}:{self.port} (is the port in "
                          "use?); choose another --replay-port (MODELOPS_REPLAY_PORT), or 0 to turn it off") from None
        self.port = listener.servers[0].sockets[0].getsockname()[1]
        self._uvicorn = listener
        log.info("input sample listening on %s:%s", self.host, self.port,
                 extra={"event": "sample_listening", "port": self.port})

    async def stop(self, grace: float | None = None) -> None:
        """Closes the port and waits (up to --graceful-timeout-seconds) for the answers in flight. Later
        calls wait for the same stop; one with `grace` 0 (a second signal) cancels what is in flight."""
        listener = self._uvicorn
        if listener is None:
            return
        if self._stopped is None:
            self._stopped = asyncio.ensure_future(listener.shutdown())
        elif grace == 0:
            for task in listener.server_state.tasks:
                task.cancel()
        await asyncio.shield(self._stopped)
