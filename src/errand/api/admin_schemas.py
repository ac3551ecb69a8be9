"""Request and response models of the admin routes (dead letters, jobs, queues, clients)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, StringConstraints, WithJsonSchema

from errand.api.schemas import JobPublic, _Request, integral
from errand.jobids import QueueName


class DeadLetterPublic(BaseModel):
    jobId: str
    queue: QueueName
    clientId: str
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

    clientId: str
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


def _client_name(value: Any) -> Any:
    if isinstance(value, str) and not value.isprintable():
        raise ValueError("name must be printable characters")
    return value


# "Printable" is Python's str.isprintable (Unicode categories), which no regex a schema
# tool runs can say; the pattern states its Latin-1 part (no C0/C1 control, DEL, no-break
# space or soft hyphen).
CLIENT_NAME_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": 64,
    "pattern": "^[^\\x00-\\x1f\\x7f-\\xa0\\xad]*$",
    "description": "1-64 printable characters: no control, format, private-use, unassigned "
    "or separator character but the space (else 422).",
}
ClientName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64),
    BeforeValidator(_client_name),
    WithJsonSchema(CLIENT_NAME_SCHEMA),
]
Count = Annotated[int, Field(ge=0, le=1_000_000, strict=True), BeforeValidator(integral)]


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


class ClientList(BaseModel):
    items: list[ClientPublic]


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
