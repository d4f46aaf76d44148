"""The load generator: one process driving N closed-loop clients against one server, HTTP/1.1 or gRPC.

Run by benchmarks/inference.py in its own venv (requirements/loadgen.txt), never in the server's
process: `python loadgen.py SPEC.json > result.json` (`-`: the spec on stdin). Every client sends the
same pre-encoded request, waits for the whole answer, and sends again at once (closed loop); a 503 or
429 is a rejection, after which the client waits as its `Retry-After` says (capped), as a well-behaved
client would.

Only answers that arrive inside the measured window [start_at + warmup_s, + duration_s] (CLOCK_MONOTONIC,
shared with the parent, which reads the server's CPU time at the same instants) are counted; connections
are opened before `start_at`, and the warm-up absorbs process start-up and connection set-up.

HTTP clients are raw asyncio protocols on uvloop with one keep-alive connection each (Content-Length and
chunked answers); gRPC clients share one channel per process and call
`/inference.GRPCInferenceService/ModelInfer` with the ModelInferRequest the parent serialized
(wire.grpc_infer_request). The process's own CPU time in the window is reported, so a saturated client
shows. loadgen_go/ is the same program in Go, which the benchmark prefers: grpc.aio costs a few
hundred microseconds of CPU per call.
"""

from __future__ import annotations

import array
import asyncio
import base64
import json
import sys
import time

REJECTED = (429, 503)


class Tally:
    """What the clients of this process saw inside the window."""

    def __init__(self, t0: float, t1: float):
        self.t0, self.t1 = t0, t1
        self.latencies = array.array("d")
        self.rejected = 0
        self.errors = 0
        self.stopping = False
        self.samples: dict[str, dict] = {}

    def record(self, started: float, status: int, sample) -> None:
        done = time.monotonic()
        if self.t0 <= done <= self.t1:
            if status == 200:
                self.latencies.append(done - started)
            elif status in REJECTED:
                self.rejected += 1
            else:
                self.errors += 1
        key = "ok" if status == 200 else "rejected" if status in REJECTED else "error"
        if key not in self.samples and sample is not None:
            self.samples[key] = sample() if callable(sample) else sample

    def error(self, message: str) -> None:
        if self.t0 <= time.monotonic() <= self.t1:
            self.errors += 1
        self.samples.setdefault("error", {"status": 0, "error": message[:300]})


# --- HTTP/1.1 ----------------------------------------------------------------------------------------

def _header(head: bytes, name: bytes) -> bytes | None:
    """One header's value from a lowercased response head."""
    at = head.find(b"\r\n" + name + b":")
    if at < 0:
        return None
    start = at + len(name) + 3
    end = head.find(b"\r\n", start)
    return head[start:end if end >= 0 else len(head)].strip()


def parse_response(buffer: bytearray) -> tuple[int, bytes, bytes, int] | None:
    """(status, lowercased head, body, bytes consumed) of the first whole response in `buffer`, or None
    while it is incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).lower()
    status = int(head[9:12])
    length = _header(head, b"content-length")
    if length is not None:
        stop = end + 4 + int(length)
        return (status, head, bytes(buffer[end + 4:stop]), stop) if len(buffer) >= stop else None
    if _header(head, b"transfer-encoding") == b"chunked":
        at, body = end + 4, bytearray()
        while True:
            line_end = buffer.find(b"\r\n", at)
            if line_end < 0:
                return None
            size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
            if size == 0:
                stop = buffer.find(b"\r\n\r\n", line_end)
                return (status, head, bytes(body), stop + 4) if stop >= 0 else None
            if len(buffer) < line_end + 2 + size + 2:
                return None
            body += buffer[line_end + 2:line_end + 2 + size]
            at = line_end + 2 + size + 2
    return status, head, b"", end + 4  # no body (e.g. 204)


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection: `request` writes the encoded request and waits for the whole answer."""

    def __init__(self):
        self.transport = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buffer += data
        if self.waiter is None:
            return
        parsed = parse_response(self.buffer)
        if parsed is None:
            return
        status, head, body, used = parsed
        del self.buffer[:used]
        waiter, self.waiter = self.waiter, None
        if not waiter.done():
            waiter.set_result((status, head, body))

    def connection_lost(self, exc):
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionResetError("server closed the connection"))

    async def request(self, data: bytes) -> tuple[int, bytes, bytes]:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


def _http_sample(status: int, head: bytes, body: bytes) -> dict:
    return {"status": status, "head": head.decode(errors="replace"), "body_b64": base64.b64encode(body).decode()}


def retry_delay(head: bytes, cap_s: float) -> float:
    """How long to wait after a rejection: its Retry-After in seconds, at most `cap_s`."""
    value = _header(head, b"retry-after")
    try:
        return min(max(float(value), 0.0), cap_s) if value is not None else 0.0
    except ValueError:
        return 0.0


async def _connect(port: int) -> HttpConnection:
    loop = asyncio.get_running_loop()
    return (await loop.create_connection(HttpConnection, "127.0.0.1", port))[1]


async def http_client(tally: Tally, port: int, request: bytes, retry_cap_s: float,
                      conn: HttpConnection | None) -> None:
    try:
        while not tally.stopping:
            if conn is None or conn.closed:
                try:
                    conn = await _connect(port)
                except OSError as e:
                    tally.error(f"connect: {e!r}")
                    await asyncio.sleep(0.05)
                    continue
            started = time.monotonic()
            try:
                status, head, body = await conn.request(request)
            except OSError as e:
                tally.error(f"request: {e!r}")
                conn = None
                continue
            tally.record(started, status, lambda s=status, h=head, b=body: _http_sample(s, h, b))
            if status in REJECTED:
                delay = retry_delay(head, retry_cap_s)
                if delay:
                    await asyncio.sleep(delay)
    finally:
        if conn is not None and conn.transport is not None:
            conn.transport.close()


async def open_http(port: int, count: int) -> list[HttpConnection | None]:
    """`count` connections, at most 64 being opened at once (a listen backlog is finite)."""
    gate = asyncio.Semaphore(64)

    async def one():
        async with gate:
            try:
                return await _connect(port)
            except OSError:
                return None  # the client retries on its own

    return list(await asyncio.gather(*(one() for _ in range(count))))


# --- gRPC --------------------------------------------------------------------------------------------

def grpc_sample(raw: bytes) -> dict:
    return {"status": 200, "body_b64": base64.b64encode(raw).decode()}


async def grpc_client(tally: Tally, call, request: bytes) -> None:
    import grpc

    while not tally.stopping:
        started = time.monotonic()
        try:
            raw = await call(request, timeout=60)
        except grpc.aio.AioRpcError as e:
            status = 503 if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED else 500
            tally.record(started, status, {"status": status, "error": f"{e.code().name}: {e.details()}"[:300]})
            if status == 500:
                await asyncio.sleep(0.01)  # a server that refuses must not be spun against
            continue
        tally.record(started, 200, lambda r=raw: grpc_sample(r))


def grpc_channel(port: int):
    import grpc

    options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options)
    return channel, channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")


# --- the run -----------------------------------------------------------------------------------------

async def run(spec: dict) -> dict:
    t0 = spec["start_at"] + spec["warmup_s"]
    tally = Tally(t0, t0 + spec["duration_s"])
    grpc_mode = spec["mode"] == "grpc"
    if grpc_mode:
        channel, call = grpc_channel(spec["port"])
        request = base64.b64decode(spec["grpc_request_b64"])
        clients = [grpc_client(tally, call, request) for _ in range(spec["connections"])]
    else:
        request = base64.b64decode(spec["request_b64"])
        conns = await open_http(spec["port"], spec["connections"])
        clients = [http_client(tally, spec["port"], request, spec.get("retry_after_cap_s", 1.0), c) for c in conns]
    late = time.monotonic() - spec["start_at"]
    if late < 0:
        await asyncio.sleep(-late)
    tasks = [asyncio.ensure_future(c) for c in clients]
    await asyncio.sleep(max(0.0, t0 - time.monotonic()))
    cpu0 = time.process_time()
    await asyncio.sleep(max(0.0, tally.t1 - time.monotonic()))
    cpu1 = time.process_time()
    tally.stopping = True
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if grpc_mode:
        await channel.close()
    return {
        "latencies_b64": base64.b64encode(tally.latencies.tobytes()).decode(),
        "rejected": tally.rejected,
        "errors": tally.errors,
        "client_cpu_s": cpu1 - cpu0,
        "late_start_s": round(max(late, 0.0), 3),
        "samples": tally.samples,
    }


async def probe(spec: dict) -> dict:
    """One request; its answer (status and body, or the decoded gRPC outputs) as a sample."""
    if spec["mode"] == "grpc":
        import grpc

        channel, call = grpc_channel(spec["port"])
        try:
            return grpc_sample(await call(base64.b64decode(spec["grpc_request_b64"]), timeout=10))
        except grpc.aio.AioRpcError as e:
            return {"status": 0, "error": f"{e.code().name}: {e.details()}"[:300]}
        finally:
            await channel.close()
    try:
        conn = await asyncio.wait_for(_connect(spec["port"]), 10)
        status, head, body = await asyncio.wait_for(conn.request(base64.b64decode(spec["request_b64"])), 30)
    except (OSError, TimeoutError) as e:
        return {"status": 0, "error": repr(e)}
    conn.transport.close()
    return _http_sample(status, head, body)


def main() -> None:
    if sys.argv[1] == "-":
        spec = json.load(sys.stdin)
    else:
        with open(sys.argv[1]) as f:
            spec = json.load(f)
    if spec["mode"] == "http":
        import uvloop  # the cheaper the client, the more of the machine the server gets

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    result = asyncio.run(probe(spec) if spec.get("probe") else run(spec))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
