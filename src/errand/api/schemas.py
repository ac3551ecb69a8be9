"""Request and response models of the public API (also the OpenAPI description)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from errand.webhooks.urls import check_webhook_url_syntax

USER_ID_MAX = 128


def _user_id(value: Any) -> Any:
    """`42` and `"42"` are the same user; booleans and floats are not user ids."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("userId must be a string or an integer")
    text = str(value)
    if not 1 <= len(text) <= USER_ID_MAX:
        raise ValueError(f"userId must be 1-{USER_ID_MAX} characters once stringified")
    return text


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
    status: Literal["waiting", "active", "completed", "failed"]
    progress: int
    attemptsMade: int
    createdAt: str | None
    startedAt: str | None
    finishedAt: str | None
    nextAttemptAt: str | None = None
    deadLettered: bool
    resultUrl: str | None = None
    error: str | None = None
    webhook: WebhookPublic | None = None


class NotificationPublic(BaseModel):
    jobId: str
    type: str
    userId: str
    priority: int
    status: Literal["waiting", "active", "completed", "failed"]
    attemptsMade: int
    deadLettered: bool
    error: str | None = None
    createdAt: str | None = None
    startedAt: str | None = None
    finishedAt: str | None = None
    nextAttemptAt: str | None = None
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
