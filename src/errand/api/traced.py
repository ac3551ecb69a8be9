"""The API with a server span around every request, hot path included (tracing on only).

OpenTelemetry's ASGI middleware wraps the whole app, so the requests the hot path
answers without FastAPI get the same span as the others: named by method and
route template (`GET /jobs/{job_id}`, never the raw path), continuing the trace of
an incoming `traceparent`. Imported only when tracing is on: the instrumentation
comes with `errand[otel]`.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

from errand import tracing
from errand.api.app import ErrandAPI
from errand.api.hotpath import HotPath

# Probes and scrapes would be most spans and tell nothing.
UNTRACED_PATHS = "/healthz,/readyz,/metrics"


class TracedErrandAPI(ErrandAPI):
    """ErrandAPI behind OpenTelemetry's ASGI middleware."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._traced = OpenTelemetryMiddleware(
            super().__call__,
            excluded_urls=UNTRACED_PATHS,
            default_span_details=self.span_details,
            tracer_provider=tracing.provider(),
            exclude_spans=["receive", "send"],  # one span per request, not one per message
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._traced(scope, receive, send)

    def span_details(self, scope: Scope) -> tuple[str, dict[str, str]]:
        """The server span's name and route: `POST /notifications`, `GET /jobs/{job_id}`."""
        method = scope.get("method", "HTTP")
        route = HotPath.match(scope) or self._route_of(scope)
        if route is None:
            return method, {}
        return f"{method} {route}", {"http.route": route}

    def _route_of(self, scope: Scope) -> str | None:
        for route in self.router.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                path: str | None = getattr(route, "path", None)
                return path
        return None
