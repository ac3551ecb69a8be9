"""Retry and retention policy per queue, as one table (cf. dramatiq's Retries)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from errand.jobids import QueueName
from errand.settings import Settings

NOTIFICATION_PRIORITIES: dict[str, int] = {
    "password-reset": 1,
    "welcome": 5,
    "order-confirmed": 5,
}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a job of a queue runs and how long its records stay."""

    attempts: int
    backoff_ms: int
    keep_completed_s: int
    keep_failed_s: int

    def job_options(self) -> dict[str, Any]:
        """BullMQ `opts` for a job under this policy."""
        opts: dict[str, Any] = {
            "attempts": self.attempts,
            "removeOnComplete": {"age": self.keep_completed_s},
            "removeOnFail": {"age": self.keep_failed_s},
        }
        if self.attempts > 1:
            opts["backoff"] = {"type": "exponential", "delay": self.backoff_ms}
        return opts


def retry_policies(settings: Settings) -> dict[QueueName, RetryPolicy]:
    """The policy table: every queue's attempts, backoff and retention."""
    keep_ok, keep_failed = settings.keep_completed_seconds, settings.keep_failed_seconds
    return {
        # A report is deterministic: a failure is a bug, retried once in case it was transient.
        QueueName.REPORTS: RetryPolicy(2, 1000, keep_ok, keep_failed),
        QueueName.NOTIFICATIONS: RetryPolicy(
            settings.notify_retries + 1, settings.notify_backoff_ms, keep_ok, keep_failed
        ),
        QueueName.WEBHOOKS: RetryPolicy(
            settings.webhook_retries + 1, settings.webhook_backoff_ms, keep_ok, keep_failed
        ),
    }


def is_last_attempt(attempt: int, max_attempts: int | None) -> bool:
    """Whether attempt number `attempt` (1-based) of a job allowed `max_attempts` is its last:
    no retry follows its failure. The one statement of this rule (engine, processors, metrics)."""
    return attempt >= (max_attempts or 1)
