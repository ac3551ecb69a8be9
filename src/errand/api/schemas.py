"""Request and response models of the public API; their JSON schemas are the OpenAPI document's.

Request models validate what the routes accept, and their JSON schemas say exactly
the same (`WithJsonSchema` where a rule is code, not a constraint): a client
generated from `/openapi.json` can send everything the API takes, and nothing it
refuses for a reason the schema could have said. Response models describe every
key the views always carry as required.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic.json_schema import SkipJsonSchema

from errand.keys import QueueName
from errand.queue.snapshot import JobStatus
from errand.webhooks.urls import MAX_URL_LENGTH, URL_PATTERN, check_webhook_url_syntax

USER_ID_MAX = 128
# An integer userId is a JSON-safe integer (I-JSON, RFC 7493): one every JSON parser reads
# exactly, however it is written (42, 42.0, 4.2e1). Larger ids go as strings.
SAFE_INT_MAX = 2**53 - 1
REPORT_TYPE_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


def _user_id(value: Any) -> Any:
    """`42`, `42.0` and `"42"` are the same user; booleans and fractions are not user ids."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON Schema's integer: a number with no fractional part
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("userId must be a string or an integer")
    if isinstance(value, int) and abs(value) > SAFE_INT_MAX:
        raise ValueError("an integer userId must be within +-(2^53-1); send it as a string")
    text = str(value)
    if not 1 <= len(text) <= USER_ID_MAX:
        raise ValueError(f"userId must be 1-{USER_ID_MAX} characters once stringified")
    return text


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
    status: JobStatus
    progress: int = Field(ge=0, le=100)
    attemptsMade: int = Field(ge=0)
    createdAt: str | None
    startedAt: str | None
    finishedAt: str | None
    nextAttemptAt: str | None
    deadLettered: bool
    resultUrl: str | None
    error: str | None
    webhook: WebhookPublic | None


class NotificationPublic(BaseModel):
    jobId: str
    type: str
    userId: str
    priority: int
    status: JobStatus
    attemptsMade: int = Field(ge=0)
    deadLettered: bool
    error: str | None
    createdAt: str | None
    startedAt: str | None
    finishedAt: str | None
    nextAttemptAt: str | None
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


def _absent_when_unset(schema: dict[str, Any]) -> None:
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
        json_schema_extra=_absent_when_unset,
    )
    jobStatus: JobStatus | SkipJsonSchema[None] = Field(
        default=None,
        description="The job's status when it is why the request conflicts.",
        json_schema_extra=_absent_when_unset,
    )


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]


class DeadLetterPublic(BaseModel):
    jobId: str
    queue: QueueName
    name: str
    data: dict[str, Any]
    failedReason: str | None
    attemptsMade: int = Field(ge=0)
    failedAt: str | None


class DeadLetterPage(BaseModel):
    total: int = Field(ge=0)
    items: list[DeadLetterPublic]


class DeadLetterRetried(BaseModel):
    jobId: str
    status: Literal["waiting"]
    statusUrl: str


class AdminJobPublic(JobPublic):
    """The job view plus what only an admin sees."""

    name: str
    data: dict[str, Any]
    priority: int
    maxAttempts: int


class AdminJobPage(BaseModel):
    items: list[AdminJobPublic]


class QueueCounts(BaseModel):
    name: QueueName
    waiting: int = Field(ge=0)
    active: int = Field(ge=0)
    delayed: int = Field(ge=0)
    completed: int = Field(ge=0)
    failed: int = Field(ge=0)
    deadLettered: int = Field(ge=0)
    workers: int = Field(ge=0)


class WorkerPublic(BaseModel):
    id: str
    pid: int | None
    host: str | None
    queues: list[str]
    lastSeen: str


class QueuesPublic(BaseModel):
    queues: list[QueueCounts]
    workers: list[WorkerPublic]
