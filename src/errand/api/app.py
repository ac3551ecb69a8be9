"""create_app(settings) -> FastAPI: routes, problem handlers, a lifespan that owns connections."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from errand import __version__
from errand.api.deps import Services
from errand.api.events import JobEventHub
from errand.api.problems import install_problem_handlers
from errand.api.routes import admin, dashboard, jobs, notifications, ops, reports
from errand.metrics import HttpMetricsMiddleware, QueueGauges
from errand.queue.connection import connect, redis_url
from errand.queue.facade import JobQueues
from errand.settings import Settings

DESCRIPTION = (
    "Post a job, get `202 Accepted` at once; workers do the slow part. "
    "Follow it by polling (`Retry-After`, `?wait=`), Server-Sent Events, or a signed webhook."
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The errand API. `settings` defaults to the environment (`ERRAND_*`)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = connect(settings, pipelined=True)  # one pipelined connection per process
        queues = JobQueues(settings, redis)
        events = JobEventHub(settings, queues, redis_url(settings))
        await events.start()
        app.state.services = Services(settings, redis, queues, events)
        app.state.queue_gauges = QueueGauges(queues.counts)
        try:
            yield
        finally:
            await events.close()
            await redis.aclose()

    app = FastAPI(
        title="errand",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    for module in (reports, notifications, jobs, admin, ops):
        app.include_router(module.router)
    app.include_router(dashboard.router)
    app.add_middleware(HttpMetricsMiddleware)
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory errand.api.app:app_from_env` (multi-process API).

    Each API process configures logging itself: with `--workers N` uvicorn spawns fresh
    interpreters that do not inherit the CLI's logging setup.
    """
    from errand.logs import configure_logging

    settings = Settings()
    configure_logging(settings)
    return create_app(settings)
