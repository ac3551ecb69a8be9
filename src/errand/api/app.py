"""create_app(settings) -> FastAPI: routes, problem handlers, a lifespan that owns connections."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from errand import __version__, gc_tuning, tracing
from errand.access.clients import ClientStore
from errand.access.limits import Limits
from errand.api.deps import Services
from errand.api.events import JobEventHub
from errand.api.gate import Gate
from errand.api.hotpath import HotPath
from errand.api.http.middleware import HttpMetricsMiddleware
from errand.api.http.problems import install_problem_handlers, route_methods
from errand.api.openapi import install_openapi, operation_id
from errand.api.routes import (
    admin,
    batch,
    clients,
    dashboard,
    docs,
    jobs,
    listing,
    notifications,
    ops,
    reports,
    schedules,
)
from errand.metrics.gauges import QueueGauges
from errand.metrics.http import HttpRecorder
from errand.processors.webhooks import WebhookEvents
from errand.queue.facade import JobQueues
from errand.redisio.connection import connect, warm_up
from errand.settings import AuthMode, Settings

DESCRIPTION = (
    "Post a job, get `202 Accepted` at once; workers do the slow part. "
    "Follow it by polling (`Retry-After`, `?wait=`), Server-Sent Events, or a signed webhook."
)


class ErrandAPI(FastAPI):
    """FastAPI with errand's hot path in front of it (see `errand.api.hotpath`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.http_metrics = HttpRecorder()  # one recorder for both paths
        self.hot_path = HotPath(lambda: self.state.services, self.http_metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = HotPath.match(scope)
        if route is None:
            await super().__call__(scope, receive, send)
        else:
            await self.hot_path(route, scope, receive, send)


def create_app(settings: Settings | None = None, *, tune_gc: bool = False) -> FastAPI:
    """The errand API. `settings` defaults to the environment (`ERRAND_*`).

    `tune_gc` is for a process that only serves this app (see `errand.gc_tuning`).
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = connect(settings, pipelined=True)  # one pipelined connection per process
        await warm_up(redis)
        queues = JobQueues(settings, redis, slot_reads=True)
        events = JobEventHub(settings, queues)
        webhooks = WebhookEvents(settings, redis, queues)
        limits = Limits(redis, queues.keys, settings.max_queue_depth)
        gate = Gate(settings, ClientStore(redis, queues.keys), limits)
        app.state.services = Services(settings, redis, queues, events, webhooks, gate)
        app.state.queue_gauges = QueueGauges(queues.counts)
        if tune_gc:
            gc_tuning.tune_after_startup()
        try:
            yield
        finally:
            await events.close()
            await queues.close()
            await redis.aclose()

    app_class = ErrandAPI
    if tracing.enabled:  # a server span around every request; the class decides, at no cost off
        from errand.api.traced import TracedErrandAPI

        app_class = TracedErrandAPI
    app = app_class(
        title="errand",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # routes/docs.py serves /docs with local assets; ReDoc would need a CDN
        redoc_url=None,
        generate_unique_id_function=operation_id,
    )
    install_problem_handlers(app)
    modules = (reports, batch, notifications, listing, jobs, schedules, admin, clients, ops)
    routers = [*(module.router for module in modules), dashboard.router, docs.router]
    for router in routers:
        app.include_router(router)
    app.state.route_methods = route_methods(routers)
    install_openapi(app, api_keys=settings.auth is AuthMode.KEYS)
    app.add_middleware(HttpMetricsMiddleware, recorder=app.http_metrics)
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory errand.api.app:app_from_env` (multi-process API).

    Each API process configures logging itself: with `--workers N` uvicorn spawns fresh
    interpreters that do not inherit the CLI's logging setup.
    """
    from errand.logs import configure_logging

    settings = Settings()
    configure_logging(settings)
    tracing.configure(settings)  # each API process sets up its own exporter, if asked
    return create_app(settings, tune_gc=True)
