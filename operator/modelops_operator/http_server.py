"""The operator's own HTTP server: Prometheus metrics, MLflow webhooks and Alertmanager notifications."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import alias, metrics, retraining
from .config import OperatorConfig
from .webhooks import WebhookRejected, alias_event, firing_targets, verify, verify_bearer


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

    async def alertmanager_view(request: web.Request) -> web.Response:
        """Record a retrain trigger on each ModelDeployment a firing alert names (retraining.record_alerts);
        the reconcile acts on it. Nothing is read or acted on before the token checks out."""
        try:
            verify_bearer(config.alert_webhook_token, request.headers.get("Authorization"))
            targets = firing_targets(payload_text(await request.read()))
        except WebhookRejected as exc:
            metrics.ALERT_WEBHOOKS.labels("rejected").inc()
            return web.json_response({"error": str(exc)}, status=exc.status)
        try:
            triggered, ignored = await retraining.record_alerts(targets, namespace)
        except retraining.Unavailable as exc:  # Alertmanager retries a 5xx
            return web.json_response({"error": str(exc)}, status=503)
        metrics.ALERT_WEBHOOKS.labels("accepted").inc()
        return web.json_response({"accepted": True, "triggered": triggered, "ignored": ignored})

    app = web.Application(client_max_size=1 << 20)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_post("/webhooks/mlflow", webhook_view)
    app.router.add_post("/webhooks/alertmanager", alertmanager_view)
    return app


async def serve(config: OperatorConfig, namespace: str | None, stopped: asyncio.Event) -> None:
    runner = web.AppRunner(make_app(config, namespace), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", config.api_port).start()
    try:
        await stopped.wait()
    finally:
        await runner.cleanup()
