"""Job, webhook and email recorders: what the engine, the processors and the DLQ admin count."""

from __future__ import annotations

import time
from typing import Any

from errand.jobids import QueueName, queue_of
from errand.metrics.registry import metrics
from errand.queue.outcomes import Outcome, outcome_of


def record_webhook_delivery(outcome: str) -> None:
    """Count one webhook delivery attempt: `delivered`, `failed` (will retry),
    `dead_lettered` (retries ran out) or `skipped` (nothing was sent).

    The worker runner already calls this for every job of the `webhooks` queue, from
    the job's outcome; a webhook processor does not need to call it again.
    """
    metrics().webhook_deliveries.labels(outcome).inc()


def record_canceled(queue: QueueName) -> None:
    """Count one job canceled before it ran (the API's cancel route)."""
    metrics().jobs_canceled.labels(str(queue)).inc()


def record_dlq_retry(job_id: str) -> None:
    """Count one dead-lettered job sent round again by an admin."""
    queue = queue_of(job_id)
    if queue is not None:
        metrics().jobs_retried.labels(str(queue), "dlq").inc()


class JobMetrics:
    """One queue's metric children, bound once, so recording a job is a few increments."""

    __slots__ = (
        "_attempts_failed",
        "_canceled",
        "_completed",
        "_dead_lettered",
        "_expired",
        "_in_progress",
        "_processing",
        "_retried",
        "_sent",
        "_wait",
        "queue",
    )

    def __init__(self, queue: QueueName) -> None:
        label, m = str(queue), metrics()
        self.queue = queue
        self._completed = m.jobs_completed.labels(label)
        self._canceled = m.jobs_canceled.labels(label)
        self._expired = m.jobs_expired.labels(label)
        self._attempts_failed = m.job_attempts_failed.labels(label)
        self._dead_lettered = m.jobs_dead_lettered.labels(label)
        self._retried = m.jobs_retried.labels(label, "backoff")
        self._processing = m.job_processing.labels(label)
        self._wait = m.job_wait.labels(label)
        self._in_progress = m.jobs_in_progress.labels(label)
        self._sent: dict[str, Any] = {}  # emails_sent's child per transport, bound on first use

    def started(self, enqueued_ms: int, first_attempt: bool) -> float:
        """A job attempt begins; returns the start mark to pass to `finished`."""
        self._in_progress.inc()
        if first_attempt and enqueued_ms:
            self._wait.observe(max(0.0, time.time() - enqueued_ms / 1000))
        return time.perf_counter()

    def finished(self, started: float) -> None:
        self._in_progress.dec()
        self._processing.observe(time.perf_counter() - started)

    def completed(self, result: Any) -> None:
        if not isinstance(result, dict):
            result = {}
        outcome = outcome_of(result)
        if outcome is not None:
            (self._canceled if outcome[0] is Outcome.CANCELED else self._expired).inc()
            return
        self._completed.inc()
        if self.queue is QueueName.NOTIFICATIONS and result.get("sent"):
            transport = str(result.get("transport") or "unknown")
            sent = self._sent.get(transport)
            if sent is None:
                sent = self._sent[transport] = metrics().emails_sent.labels(transport)
            sent.inc()
        elif self.queue is QueueName.WEBHOOKS:
            skipped = result.get("delivered") is False
            record_webhook_delivery("skipped" if skipped else "delivered")

    def failed(self, dead_lettered: bool) -> None:
        self._attempts_failed.inc()
        if dead_lettered:
            self._dead_lettered.inc()
        else:
            self._retried.inc()
        if self.queue is QueueName.WEBHOOKS:
            record_webhook_delivery("dead_lettered" if dead_lettered else "failed")
