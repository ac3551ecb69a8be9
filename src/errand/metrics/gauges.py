"""Queue gauges for the API's `/metrics`: BullMQ's job counts, read at most once a second."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from errand.jobids import QueueName
from errand.metrics.registry import metrics

log = logging.getLogger("errand.metrics")

COUNTS_TTL_S = 1.0


class QueueGauges:
    """`errand_jobs{queue,state}` and `errand_redis_up`, from counts cached for `ttl_s`.

    Concurrent scrapes share one read, so a busy Prometheus costs Redis at most one
    round of `getJobCounts` per second.
    """

    def __init__(
        self,
        read_counts: Callable[[QueueName], Awaitable[dict[str, int]]],
        ttl_s: float = COUNTS_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read_counts = read_counts
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self._read_at = -ttl_s
        self._counts: dict[QueueName, dict[str, int]] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    async def refresh(self) -> None:
        async with self._lock:
            if self._clock() - self._read_at < self._ttl_s:
                return
            try:
                replies = await asyncio.gather(*(self._read_counts(q) for q in QueueName))
            except Exception as err:  # the scrape still answers, with errand_redis_up 0
                log.warning("metrics: queue counts unavailable: %s", type(err).__name__)
                self._counts = {}
            else:
                self._counts = dict(zip(QueueName, replies, strict=True))
            self._read_at = self._clock()

    def collect(self) -> Any:
        up = GaugeMetricFamily("errand_redis_up", "1 when the last queue count read worked.")
        up.add_metric([], 1 if self._counts else 0)
        yield up
        jobs = GaugeMetricFamily(
            "errand_jobs", "Jobs per queue and state (failed = DLQ).", labels=["queue", "state"]
        )
        for queue, raw in self._counts.items():
            for state, value in public_counts(raw).items():
                jobs.add_metric([str(queue), state], value)
        yield jobs

    async def render(self) -> bytes:
        """The whole `/metrics` body: this process's registry plus the queue gauges."""
        await self.refresh()
        return generate_latest(metrics().registry) + generate_latest(self.registry)


def public_counts(raw: dict[str, int]) -> dict[str, int]:
    """BullMQ's states folded into errand's: prioritized and paused jobs are waiting."""
    return {
        "waiting": raw.get("waiting", 0) + raw.get("prioritized", 0) + raw.get("paused", 0),
        "active": raw.get("active", 0),
        "delayed": raw.get("delayed", 0),
        "completed": raw.get("completed", 0),
        "failed": raw.get("failed", 0),
    }
