"""The operator's own HTTP server: Prometheus metrics and MLflow webhooks."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import alias, metrics
from .config import OperatorConfig
from .webhooks import WebhookRejected, alias_event, verify


def payload_text(body: bytes) -> str:
    """The delivery's JSON text; a body that is not UTF-8 is the sender's error (400), not ours."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookRejected(400, f"the payload is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def make_app(config: OperatorConfig, namespace: str | None) -> web.Application:
    async def metrics_view(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def webhook_view(request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            delivery = verify(config.webhook_secret, headers, payload_text(await request.read()))
        except WebhookRejected as exc:
            metrics.WEBHOOKS.labels("rejected").inc()
            return web.json_response({"error": str(exc)}, status=exc.status)
        event = alias_event(delivery)
        moved = 0
        if event:
            moved = await alias.refresh_matching(config, namespace, model_name=event[0], alias=event[1])
        metrics.WEBHOOKS.labels("accepted").inc()
        return web.json_response({"accepted": True, "moved": moved})

    app = web.Application(client_max_size=1 << 20)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_post("/webhooks/mlflow", webhook_view)
    return app


async def serve(config: OperatorConfig, namespace: str | None, stopped: asyncio.Event) -> None:
    runner = web.AppRunner(make_app(config, namespace), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", config.api_port).start()
    try:
        await stopped.wait()
    finally:
        await runner.cleanup()
