"""The API with a server span around every request, hot path included (tracing on only).

OpenTelemetry's ASGI middleware wraps the whole app, so the requests the hot path
answers without FastAPI get the same span as the others: named by method and
route template (`GET /jobs/{job_id}`, never the raw path), continuing the trace of
an incoming `traceparent`. Imported only when tracing is on: the instrumentation
comes with `errand[otel]`.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from starlette.types import Message, Receive, Scope, Send

from errand import tracing
from errand.api.app import ErrandAPI
from errand.api.hotpath import HotPath

# Probes and scrapes would be most spans and tell nothing.
UNTRACED_PATHS = "/healthz,/readyz,/metrics"
# Masked even when OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST names them.
SECRET_HEADERS = ["authorization", "proxy-authorization", "x-api-key", "cookie", "set-cookie"]


class TracedErrandAPI(ErrandAPI):
    """ErrandAPI behind OpenTelemetry's ASGI middleware."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._traced = OpenTelemetryMiddleware(
            self._answer_and_name,
            excluded_urls=UNTRACED_PATHS,
            default_span_details=span_details,
            tracer_provider=tracing.provider(),
            exclude_spans=["receive", "send"],  # one span per request, not one per message
            http_capture_headers_sanitize_fields=SECRET_HEADERS,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._traced(scope, receive, send)

    async def _answer_and_name(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer, naming the span after the route FastAPI matched once the response starts
        (the span ends with the response; the hot path's routes are named at the start)."""
        if scope["type"] != "http" or HotPath.match(scope) is not None:
            await super().__call__(scope, receive, send)
            return
        span = trace.get_current_span()

        async def send_and_name(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = route_template(scope)
                if route is not None:
                    span.update_name(f"{scope['method']} {route}")
                    span.set_attribute("http.route", route)
            await send(message)

        await super().__call__(scope, receive, send_and_name)


def span_details(scope: Scope) -> tuple[str, dict[str, str]]:
    """The server span's name at its start: `POST /notifications`, `GET /jobs/{job_id}` for the
    hot path; the method alone until FastAPI has matched a route."""
    method: str = scope.get("method", "HTTP")
    route = HotPath.match(scope)
    if route is None:
        return method, {}
    return f"{method} {route}", {"http.route": route}


def route_template(scope: Scope) -> str | None:
    """The matched route's full template (`/admin/dlq/{job_id}/retry`), or None.

    FastAPI leaves the route in the scope with its path inside its router
    (`/dlq/{job_id}/retry`); the router's prefix is what the request path has
    before the route's own part.
    """
    route = scope.get("route")
    template: str | None = getattr(route, "path", None)
    path_format: str | None = getattr(route, "path_format", None)
    if template is None or path_format is None:
        return template
    try:
        own = path_format.format(**scope.get("path_params", {}))
    except (KeyError, IndexError, ValueError):
        return template
    path: str = scope["path"]
    return path[: len(path) - len(own)] + template if path.endswith(own) else template
