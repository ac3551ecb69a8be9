"""The listeners a worker process hangs on each worker: metrics and log lines per job.

BullMQ (and the fast engine, which emits the same events) calls listeners
synchronously inside its own try: one that raised would send a completed job down
the failure path, so these never let an exception out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bullmq import Job, UnrecoverableError

from errand.clock import now_ms
from errand.jobids import QueueName
from errand.metrics.jobs import JobMetrics
from errand.queue.policies import is_last_attempt

log = logging.getLogger("errand.worker")


def job_fields(job_id: Any, queue: QueueName, attempt: int) -> dict[str, Any]:
    """The `extra=` of a log line about one attempt of a job."""
    return {"jobId": str(job_id), "queue": str(queue), "attempt": attempt}


def on_completed_listener(queue: QueueName, metrics: JobMetrics) -> Callable[[Job, Any], None]:
    def on_completed(job: Job, result: Any) -> None:
        try:
            metrics.completed(result)
            if log.isEnabledFor(logging.DEBUG):  # one line per job is too dear at INFO
                took_ms = now_ms() - job.processedOn if job.processedOn else 0
                log.debug(
                    "job completed in %d ms",
                    took_ms,
                    extra=job_fields(job.id, queue, job.attemptsMade),
                )
        except Exception:
            log.exception("could not record a completed job")

    return on_completed


def on_failed_listener(
    queue: QueueName, metrics: JobMetrics
) -> Callable[[Job, BaseException], None]:
    def on_failed(job: Job, err: BaseException) -> None:
        try:
            dead = isinstance(err, UnrecoverableError) or is_last_attempt(
                job.attemptsMade, job.opts.get("attempts")
            )
            metrics.failed(dead)
            fields = job_fields(job.id, queue, job.attemptsMade)
            if dead:
                log.warning(
                    "job dead-lettered after %d attempt(s): %s", job.attemptsMade, err, extra=fields
                )
            else:
                log.info("job attempt failed, will retry: %s", err, extra=fields)
        except Exception:
            log.exception("could not record a failed job")

    return on_failed


LOCK_RENEWAL_ERROR = "could not renew lock for job "


def error_listener(queue: QueueName) -> Callable[..., None]:
    def on_error(err: BaseException, *args: Any) -> None:
        if str(err).startswith(LOCK_RENEWAL_ERROR):
            return  # reported, with the job's fields, by the lockRenewalFailed listener
        job = next((a for a in args if isinstance(a, Job)), None)
        extra = job_fields(job.id, queue, job.attemptsMade + 1) if job is not None else None
        log.warning("worker error on %s: %s", queue, err, extra=extra)

    return on_error


def lock_renewal_failed_listener(queue: QueueName, worker: Any) -> Callable[[list[str]], None]:
    """A renewal that lost the race with the job's own completion is harmless; one for a
    job this worker still runs means another worker may take that job over."""

    def on_lock_renewal_failed(job_ids: list[str]) -> None:
        running = {str(job.id): job for job, _ in list(worker.jobs)}
        for job_id in job_ids:
            job = running.get(str(job_id))
            if job is not None:
                log.warning(
                    "lost the lock of a running job; it may run again elsewhere",
                    extra=job_fields(job_id, queue, job.attemptsMade + 1),
                )

    return on_lock_renewal_failed
