"""Request and response models of the public API; their JSON schemas are the OpenAPI document's.

Request models validate what the routes accept, and their JSON schemas say exactly
the same (`WithJsonSchema` where a rule is code, not a constraint): a client
generated from `/openapi.json` can send everything the API takes, and nothing it
refuses for a reason the schema could have said. Response models describe every
key the views always carry as required.
"""

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
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema

from errand.api.idempotency import KEY_PATTERN
from errand.clock import now_ms
from errand.jobids import QueueName
from errand.queue.producers import Timing
from errand.statuses import JobStatus
from errand.webhooks.urls import MAX_URL_LENGTH, URL_PATTERN, check_webhook_url_syntax

USER_ID_MAX = 128
# An integer userId is a JSON-safe integer (I-JSON, RFC 7493): one every JSON parser reads
# exactly, however it is written (42, 42.0, 4.2e1). Larger ids go as strings.
SAFE_INT_MAX = 2**53 - 1
REPORT_TYPE_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
MAX_SEND_AHEAD_MS = 365 * 86_400_000
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


def integral(value: Any) -> Any:
    """JSON Schema's integer is a number with no fractional part: `5.0` is read as `5`
    (anything else is left for the field's own validation). Before a strict int field:
    `Annotated[int, Field(strict=True, ...), BeforeValidator(integral)]`."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _user_id(value: Any) -> Any:
    """`42`, `42.0` and `"42"` are the same user; booleans and fractions are not user ids."""
    value = integral(value)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("userId must be a string or an integer")
    if isinstance(value, int) and abs(value) > SAFE_INT_MAX:
        raise ValueError("an integer userId must be within +-(2^53-1); send it as a string")
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


USER_ID_SCHEMA: dict[str, Any] = {
    "description": "A string of 1-128 characters, or an integer within +-(2^53-1) "
    "(a JSON-safe integer): 42 and '42' are the same user.",
    "oneOf": [
        {"type": "string", "minLength": 1, "maxLength": USER_ID_MAX},
        {"type": "integer", "minimum": -SAFE_INT_MAX, "maximum": SAFE_INT_MAX},
    ],
}
WEBHOOK_URL_SCHEMA: dict[str, Any] = {
    "type": "string",
    "format": "uri",
    "maxLength": MAX_URL_LENGTH,
    "pattern": URL_PATTERN,
    "description": "http(s) URL, at most 2048 characters, no control characters, a host and "
    "no user info; it receives the signed final event. Its host must resolve, and only to "
    "public addresses unless ERRAND_WEBHOOK_ALLOW_PRIVATE=true: else 422 at submit time.",
}

UserId = Annotated[str, BeforeValidator(_user_id), WithJsonSchema(USER_ID_SCHEMA)]
WebhookUrl = Annotated[
    str, BeforeValidator(check_webhook_url_syntax), WithJsonSchema(WEBHOOK_URL_SCHEMA)
]
Rfc3339Ms = Annotated[
    int,
    BeforeValidator(_rfc3339_ms),
    WithJsonSchema({"type": "string", "format": "date-time"}),
    Field(description="RFC 3339 with an offset, e.g. 2026-12-01T08:00:00+01:00."),
]
ReportType = Annotated[str, Field(pattern=REPORT_TYPE_PATTERN)]
NotificationType = Literal["welcome", "password-reset", "order-confirmed"]


class _Request(BaseModel):
    """Unknown fields are ignored; an optional field sent as null counts as absent."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


class ReportCreate(_Request):
    userId: UserId
    reportType: ReportType
    webhookUrl: WebhookUrl | None = None


class NotificationCreate(_Request):
    type: NotificationType
    userId: UserId
    webhookUrl: WebhookUrl | None = None
    sendAt: Rfc3339Ms | None = Field(
        None, description="When to send (at most 365 days ahead; a past instant sends now)."
    )
    expiresAt: Rfc3339Ms | None = Field(
        None, description="Not sent after this instant: later than now and than sendAt."
    )

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
        default=None,
        min_length=1,
        max_length=255,
        pattern=KEY_PATTERN,
        description="The rules and scope of POST /notifications' Idempotency-Key.",
    )


class BatchCreate(_Request):
    items: list[BatchItem] = Field(min_length=1, max_length=1000)


class ReportAccepted(BaseModel):
    jobId: str
    statusUrl: str
    status: JobStatus
    deduplicated: bool


class NotificationAccepted(BaseModel):
    jobId: str
    statusUrl: str
    status: JobStatus


class WebhookPublic(BaseModel):
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int = Field(ge=0)
    lastStatusCode: int | None
    lastError: str | None
    deliveredAt: str | None


class JobPublic(BaseModel):
    jobId: str
    queue: QueueName
    userId: str
    type: str
    scheduleId: str | None
    status: JobStatus
    progress: int = Field(ge=0, le=100)
    attemptsMade: int = Field(ge=0)
    createdAt: str | None
    startedAt: str | None
    finishedAt: str | None
    nextAttemptAt: str | None
    scheduledFor: str | None
    cancelRequested: bool
    deadLettered: bool
    resultUrl: str | None
    error: str | None
    webhook: WebhookPublic | None


class JobPage(BaseModel):
    items: list[JobPublic]
    nextCursor: str | None


class NotificationPublic(BaseModel):
    jobId: str
    type: str
    userId: str
    scheduleId: str | None
    priority: int
    status: JobStatus
    attemptsMade: int = Field(ge=0)
    deadLettered: bool
    error: str | None
    createdAt: str | None
    startedAt: str | None
    finishedAt: str | None
    nextAttemptAt: str | None
    sendAt: str | None
    expiresAt: str | None
    scheduledFor: str | None
    cancelRequested: bool
    webhook: WebhookPublic | None


class ReportRow(BaseModel):
    period: str
    events: int
    sessions: int
    eventsPerSession: float


class ReportResult(BaseModel):
    jobId: str
    userId: str
    reportType: str
    generatedAt: str
    rows: list[ReportRow]
    totals: dict[str, int]


class FieldErrorPublic(BaseModel):
    field: str
    message: str


def absent_when_unset(schema: dict[str, Any]) -> None:
    """An optional key the answer leaves out (never sends as null): no `default` in its schema."""
    schema.pop("default", None)


class Problem(BaseModel):
    """An RFC 9457 problem document (`application/problem+json`)."""

    type: str = Field(description="A stable URN such as urn:errand:problem:validation.")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    errors: list[FieldErrorPublic] | SkipJsonSchema[None] = Field(
        default=None,
        description="One entry per broken rule (validation problems only).",
        json_schema_extra=absent_when_unset,
    )
    jobStatus: JobStatus | SkipJsonSchema[None] = Field(
        default=None,
        description="The job's status when it is why the request conflicts.",
        json_schema_extra=absent_when_unset,
    )


class BatchItemAccepted(BaseModel):
    """An item queued now, or (`replayed`) answered from its idempotencyKey's record."""

    status: Literal[202]
    jobId: str
    statusUrl: str
    replayed: Literal[True] | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=absent_when_unset
    )


class BatchItemRefused(BaseModel):
    """An item refused: the status and problem POST /notifications would have answered."""

    status: int = Field(ge=400, le=599)
    problem: Problem


class BatchResults(BaseModel):
    items: list[BatchItemAccepted | BatchItemRefused] = Field(
        description="One result per item, in request order."
    )


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
