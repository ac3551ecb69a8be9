"""The process's Prometheus registry and errand's metric objects, built on first use.

Every errand process records into one registry. Nothing happens at import: the
first caller of `metrics()` builds the registry, its process collectors and every
metric family, pre-labelled so each series shows from the first scrape. Label values
are bounded: queues, states, transports, outcomes and route templates, never ids or
raw paths.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from errand import __version__
from errand.jobids import QueueName
from errand.settings import EmailTransport

CONTENT_TYPE = CONTENT_TYPE_LATEST
WEBHOOK_OUTCOMES = ("delivered", "failed", "dead_lettered", "skipped")
RETRY_TRIGGERS = ("backoff", "dlq")

_PROCESSING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60)


@dataclass(frozen=True, slots=True)
class Metrics:
    """The registry and every metric family errand records into."""

    registry: CollectorRegistry
    jobs_completed: Counter
    jobs_canceled: Counter
    jobs_expired: Counter
    job_attempts_failed: Counter
    jobs_dead_lettered: Counter
    jobs_retried: Counter
    job_processing: Histogram
    job_wait: Histogram
    jobs_in_progress: Gauge
    webhook_deliveries: Counter
    emails_sent: Counter
    http_requests: Counter
    http_in_flight: Gauge
    http_duration: Histogram


@functools.cache
def metrics() -> Metrics:
    """This process's metrics, built on the first call."""
    disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created` doubles the output
    r = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=r)
    Gauge("errand_build_info", "errand's version (always 1).", ["version"], registry=r).labels(
        __version__
    ).set(1)
    m = Metrics(
        registry=r,
        jobs_completed=Counter(
            "errand_jobs_completed",
            "Jobs that completed (canceled and expired ones are counted apart).",
            ["queue"],
            registry=r,
        ),
        jobs_canceled=Counter(
            "errand_jobs_canceled",
            "Jobs canceled: before they ran (counted by the API process that canceled them) "
            "or while they ran (counted by the worker).",
            ["queue"],
            registry=r,
        ),
        jobs_expired=Counter(
            "errand_jobs_expired",
            "Notifications that reached their expiresAt before they were sent.",
            ["queue"],
            registry=r,
        ),
        job_attempts_failed=Counter(
            "errand_job_attempts_failed",
            "Job attempts that failed (retried or dead-lettered).",
            ["queue"],
            registry=r,
        ),
        jobs_dead_lettered=Counter(
            "errand_jobs_dead_lettered",
            "Jobs that ran out of attempts and went to the DLQ.",
            ["queue"],
            registry=r,
        ),
        jobs_retried=Counter(
            "errand_jobs_retried",
            "Jobs sent round again: trigger=backoff after a failed attempt, "
            "trigger=dlq by POST /admin/dlq/{id}/retry.",
            ["queue", "trigger"],
            registry=r,
        ),
        job_processing=Histogram(
            "errand_job_processing_seconds",
            "Time one attempt of a job ran in a worker.",
            ["queue"],
            buckets=_PROCESSING_BUCKETS,
            registry=r,
        ),
        job_wait=Histogram(
            "errand_job_wait_seconds",
            "Time from enqueue to the start of a job's first attempt.",
            ["queue"],
            buckets=_WAIT_BUCKETS,
            registry=r,
        ),
        jobs_in_progress=Gauge(
            "errand_jobs_in_progress", "Jobs this process is running now.", ["queue"], registry=r
        ),
        webhook_deliveries=Counter(
            "errand_webhook_deliveries",
            "Webhook delivery attempts by outcome.",
            ["outcome"],
            registry=r,
        ),
        emails_sent=Counter(
            "errand_emails_sent", "Emails sent, by transport.", ["transport"], registry=r
        ),
        http_requests=Counter(
            "errand_http_requests",
            "HTTP requests by route template and status.",
            ["method", "route", "status"],
            registry=r,
        ),
        http_in_flight=Gauge(
            "errand_http_requests_in_flight",
            "HTTP requests being answered now (a scrape counts itself).",
            registry=r,
        ),
        http_duration=Histogram(
            "errand_http_request_duration_seconds",
            "Time to answer an HTTP request (SSE: the whole stream).",
            ["method", "route"],
            buckets=_HTTP_BUCKETS,
            registry=r,
        ),
    )
    _prelabel(m)
    return m


def _prelabel(m: Metrics) -> None:
    for queue in QueueName:
        for family in (
            m.jobs_completed,
            m.jobs_canceled,
            m.jobs_expired,
            m.job_attempts_failed,
            m.jobs_dead_lettered,
            m.job_processing,
            m.job_wait,
            m.jobs_in_progress,
        ):
            family.labels(str(queue))
        for trigger in RETRY_TRIGGERS:
            m.jobs_retried.labels(str(queue), trigger)
    for outcome in WEBHOOK_OUTCOMES:
        m.webhook_deliveries.labels(outcome)
    for transport in EmailTransport:
        m.emails_sent.labels(str(transport))
