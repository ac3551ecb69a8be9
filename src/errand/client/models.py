"""Typed views of what the errand API answers, and the bodies a caller builds for it.

Views are pydantic models with snake_case attributes read from the API's camelCase
JSON; fields the server adds later are kept (`model_extra`), not refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from errand.statuses import FINAL_STATUSES, JobStatus

NotificationType = Literal["welcome", "password-reset", "order-confirmed"]


class _View(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True
    )


class FieldError(_View):
    field: str
    message: str


class Problem(_View):
    """An RFC 9457 problem document, as the server sent it."""

    type: str = "about:blank"
    title: str = ""
    status: int
    detail: str = ""
    errors: list[FieldError] | None = None
    job_status: str | None = None


class WebhookState(_View):
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None


class _JobFields(_View):
    job_id: str
    status: JobStatus
    attempts_made: int = 0
    dead_lettered: bool = False
    error: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    next_attempt_at: datetime | None = None
    scheduled_for: datetime | None = None
    webhook: WebhookState | None = None

    @property
    def is_final(self) -> bool:
        """True once the job is completed, failed, canceled or expired."""
        return self.status in FINAL_STATUSES


class JobView(_JobFields):
    """GET /jobs/{id}: any job, whatever its queue (also the items of lists and events)."""

    queue: str
    progress: int = 0
    result_url: str | None = None
    user_id: str | None = None
    type: str | None = None
    schedule_id: str | None = None
    cancel_requested: bool = False


class NotificationView(_JobFields):
    """GET /notifications/{id}."""

    type: str
    user_id: str
    priority: int


class Accepted(_View):
    """The 202 of a submit. `idempotency_key` is the key this client sent with it."""

    job_id: str
    status_url: str
    status: JobStatus
    deduplicated: bool = False
    idempotency_key: str | None = None


class BatchItem(_View):
    """One item's outcome in a batch: accepted (`status` 202) or refused (`problem`)."""

    status: int
    job_id: str | None = None
    status_url: str | None = None
    replayed: bool = False
    problem: Problem | None = None

    @property
    def accepted(self) -> bool:
        return self.problem is None and 200 <= self.status < 300


class BatchResult(_View):
    items: list[BatchItem]


class JobPage(_View):
    items: list[JobView]
    next_cursor: str | None = None


class Schedule(_View):
    schedule_id: str
    cron: str | None = None
    every: int | None = None
    timezone: str | None = None
    job: dict[str, Any]
    created_at: datetime | None = None
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    last_job_id: str | None = None


class ScheduleList(_View):
    items: list[Schedule]


def rfc3339(moment: datetime, name: str) -> str:
    """`moment` as RFC 3339 with its offset; a naive datetime is refused (ValueError)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (e.g. datetime.now(UTC))")
    return moment.isoformat()


@dataclass(frozen=True, slots=True)
class ReportRequest:
    """The body of POST /reports (also a schedule's job)."""

    user_id: str | int
    report_type: str
    webhook_url: str | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"userId": self.user_id, "reportType": self.report_type}
        if self.webhook_url is not None:
            body["webhookUrl"] = self.webhook_url
        return body


@dataclass(frozen=True, slots=True)
class NotificationRequest:
    """The body of POST /notifications (also a batch item or a schedule's job)."""

    type: NotificationType
    user_id: str | int
    webhook_url: str | None = None
    send_at: datetime | None = None
    expires_at: datetime | None = None
    idempotency_key: str | None = None

    def body(self) -> dict[str, Any]:
        """The JSON body; raises ValueError for a naive `send_at` or `expires_at`."""
        body: dict[str, Any] = {"type": self.type, "userId": self.user_id}
        if self.webhook_url is not None:
            body["webhookUrl"] = self.webhook_url
        if self.send_at is not None:
            body["sendAt"] = rfc3339(self.send_at, "send_at")
        if self.expires_at is not None:
            body["expiresAt"] = rfc3339(self.expires_at, "expires_at")
        return body
