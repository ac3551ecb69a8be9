"""The one HTTP recorder: both API paths (the hot path and the FastAPI middleware) count here."""

from __future__ import annotations

import time

from prometheus_client.metrics import Counter, Histogram

from errand.metrics.registry import metrics

UNMATCHED_ROUTE = "unmatched"


class HttpRecorder:
    """Counts requests by method, route template and status, and times them.

    Label children are bound once per (method, route, status) instead of per request.
    """

    def __init__(self) -> None:
        m = metrics()
        self._requests_family, self._duration_family = m.http_requests, m.http_duration
        self._in_flight = m.http_in_flight
        self._requests: dict[tuple[str, str, int], Counter] = {}
        self._durations: dict[tuple[str, str], Histogram] = {}

    def started(self) -> float:
        """A request begins; returns the start mark to pass to `finished`."""
        self._in_flight.inc()
        return time.perf_counter()

    def finished(self, method: str, route: str, status: int, started: float) -> None:
        self._in_flight.dec()
        counter = self._requests.get((method, route, status))
        if counter is None:
            counter = self._requests_family.labels(method, route, str(status))
            self._requests[method, route, status] = counter
        counter.inc()
        histogram = self._durations.get((method, route))
        if histogram is None:
            histogram = self._duration_family.labels(method, route)
            self._durations[method, route] = histogram
        histogram.observe(time.perf_counter() - started)
