"""Request and response models of the public API (also the OpenAPI description)."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from errand.clock import now_ms
from errand.queue.producers import Timing
from errand.webhooks.urls import check_webhook_url_syntax

USER_ID_MAX = 128
MAX_SEND_AHEAD_MS = 365 * 86_400_000
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


def _user_id(value: Any) -> Any:
    """`42` and `"42"` are the same user; booleans and floats are not user ids."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("userId must be a string or an integer")
    text = str(value)
    if not 1 <= len(text) <= USER_ID_MAX:
        raise ValueError(f"userId must be 1-{USER_ID_MAX} characters once stringified")
    return text


def _rfc3339_ms(value: Any) -> int:
    """An RFC 3339 timestamp with an offset (`Z` counts) as epoch ms, rounded up so a
    job is never due before the instant asked for."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError(
            "must be an RFC 3339 timestamp with an offset, e.g. 2026-12-01T08:00:00+01:00"
        )
    text = value.upper().replace("Z", "+00:00")
    fraction = re.search(r"\.(\d+)", text)
    if fraction and len(fraction.group(1)) > 6:  # datetime keeps microseconds only
        text = text.replace(fraction.group(0), "." + fraction.group(1)[:6], 1)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as err:
        raise ValueError("is not a valid date and time") from err
    return math.ceil(moment.timestamp() * 1000)


Rfc3339Ms = Annotated[
    int,
    BeforeValidator(_rfc3339_ms),
    WithJsonSchema({"type": "string", "format": "date-time"}),
    Field(description="RFC 3339 with an offset, e.g. 2026-12-01T08:00:00+01:00."),
]
PublicStatus = Literal[
    "scheduled", "waiting", "active", "completed", "failed", "canceled", "expired"
]

UserId = Annotated[
    str,
    BeforeValidator(_user_id),
    Field(description="A string or an integer, 1-128 characters once stringified."),
]
WebhookUrl = Annotated[
    str,
    BeforeValidator(check_webhook_url_syntax),
    Field(description="http(s) URL (at most 2048 chars) that receives the signed final event."),
]
ReportType = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
NotificationType = Literal["welcome", "password-reset", "order-confirmed"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


class ReportCreate(_Request):
    userId: UserId
    reportType: ReportType
    webhookUrl: WebhookUrl | None = None


class NotificationCreate(_Request):
    type: NotificationType
    userId: UserId
    webhookUrl: WebhookUrl | None = None
    sendAt: Rfc3339Ms | None = None
    expiresAt: Rfc3339Ms | None = None

    @field_validator("sendAt")
    @classmethod
    def _within_a_year(cls, send_at_ms: int | None) -> int | None:
        if send_at_ms is not None and send_at_ms - now_ms() > MAX_SEND_AHEAD_MS:
            raise ValueError("must be at most 365 days ahead")
        return send_at_ms

    @field_validator("expiresAt")
    @classmethod
    def _after_now_and_send_at(cls, expires_ms: int | None, info: ValidationInfo) -> int | None:
        if expires_ms is None:
            return None
        if expires_ms <= now_ms():
            raise ValueError("must be later than now")
        send_at_ms = info.data.get("sendAt")
        if send_at_ms is not None and expires_ms <= send_at_ms:
            raise ValueError("must be later than sendAt")
        return expires_ms

    def timing(self) -> Timing:
        return Timing(self.sendAt or 0, self.expiresAt or 0)


class BatchItem(NotificationCreate):
    idempotencyKey: str | None = Field(
        default=None, description="the rules and scope of POST /notifications' Idempotency-Key"
    )


class BatchCreate(_Request):
    items: list[BatchItem] = Field(min_length=1, max_length=1000)


class BatchItemResult(BaseModel):
    status: int
    jobId: str | None = None
    statusUrl: str | None = None
    replayed: bool | None = None
    problem: Problem | None = None


class BatchResults(BaseModel):
    items: list[BatchItemResult]


class ReportAccepted(BaseModel):
    jobId: str
    statusUrl: str
    status: str
    deduplicated: bool


class NotificationAccepted(BaseModel):
    jobId: str
    statusUrl: str
    status: str


class WebhookPublic(BaseModel):
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    lastStatusCode: int | None = None
    lastError: str | None = None
    deliveredAt: str | None = None


class JobPublic(BaseModel):
    jobId: str
    queue: str
    userId: str
    type: str
    scheduleId: str | None = None
    status: PublicStatus
    progress: int
    attemptsMade: int
    createdAt: str | None
    startedAt: str | None
    finishedAt: str | None
    nextAttemptAt: str | None = None
    scheduledFor: str | None = None
    cancelRequested: bool = False
    deadLettered: bool
    resultUrl: str | None = None
    error: str | None = None
    webhook: WebhookPublic | None = None


class JobPage(BaseModel):
    items: list[JobPublic]
    nextCursor: str | None


class NotificationPublic(BaseModel):
    jobId: str
    type: str
    userId: str
    scheduleId: str | None = None
    priority: int
    status: PublicStatus
    attemptsMade: int
    deadLettered: bool
    error: str | None = None
    createdAt: str | None = None
    startedAt: str | None = None
    finishedAt: str | None = None
    nextAttemptAt: str | None = None
    sendAt: str | None = None
    expiresAt: str | None = None
    scheduledFor: str | None = None
    cancelRequested: bool = False
    webhook: WebhookPublic | None = None


class FieldErrorPublic(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldErrorPublic] | None = None
    jobStatus: str | None = None


class DeadLetterPublic(BaseModel):
    jobId: str
    queue: str
    clientId: str
    name: str
    data: dict[str, Any]
    failedReason: str | None
    attemptsMade: int
    failedAt: str | None


class DeadLetterPage(BaseModel):
    total: int
    items: list[DeadLetterPublic]


def _client_name(value: Any) -> Any:
    if isinstance(value, str) and not value.isprintable():
        raise ValueError("name must be printable characters")
    return value


ClientName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64),
    BeforeValidator(_client_name),
    Field(description="1-64 printable characters."),
]
Count = Annotated[int, Field(ge=0, le=1_000_000, strict=True)]


class RateLimitSpec(_Request):
    perSecond: Annotated[float, Field(ge=0, le=1_000_000, strict=True)]
    burst: Count


class ClientCreate(_Request):
    name: ClientName
    rateLimit: RateLimitSpec | None = None
    notifyPerUserPerHour: Count | None = None


class KeyPublic(BaseModel):
    keyId: str
    createdAt: str | None


class ClientPublic(BaseModel):
    clientId: str
    name: str
    createdAt: str | None
    rateLimit: RateLimitSpec
    notifyPerUserPerHour: int
    keys: list[KeyPublic]


class ClientCreated(BaseModel):
    clientId: str
    name: str
    createdAt: str | None
    rateLimit: RateLimitSpec
    notifyPerUserPerHour: int
    keyId: str
    apiKey: str


class KeyCreated(BaseModel):
    keyId: str
    apiKey: str
    createdAt: str | None
