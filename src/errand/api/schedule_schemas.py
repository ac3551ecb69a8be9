"""POST /schedules: the request model and its cross-field rules, and the schedule view model."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr, WithJsonSchema
from pydantic.json_schema import SkipJsonSchema

from errand.api.http.body import validate_body
from errand.api.schemas import (
    NotificationCreate,
    NotificationType,
    ReportCreate,
    UserId,
    WebhookUrl,
    _Request,
    absent_when_unset,
    integral,
)
from errand.errors import FieldError, InvalidInput
from errand.jobids import QueueName
from errand.queue.schedules import UTC, ScheduleSpec, check_cron, check_timezone

EVERY_MAX_S = 365 * 24 * 3600
# Absolute times mean nothing in a job that recurs: each run is due at its own tick.
_NOT_IN_A_SCHEDULE = ("sendAt", "expiresAt")
_JOB_MODELS: dict[str, type[ReportCreate] | type[NotificationCreate]] = {
    QueueName.REPORTS: ReportCreate,
    QueueName.NOTIFICATIONS: NotificationCreate,
}


class ScheduledReport(ReportCreate):
    """A schedule's report: a POST /reports body plus its queue."""

    queue: Literal["reports"]


class ScheduledNotification(_Request):
    """A schedule's notification: a POST /notifications body without sendAt or expiresAt
    (each run is due at its own tick) plus its queue."""

    queue: Literal["notifications"]
    type: NotificationType
    userId: UserId
    webhookUrl: WebhookUrl | None = None
    sendAt: None = Field(None, description="Not allowed in a schedule's job.")
    expiresAt: None = Field(None, description="Not allowed in a schedule's job.")


# The document describes the job by its queue (`parse_schedule` validates it the same way);
# inline, as each variant is self-contained.
JOB_SCHEMA: dict[str, Any] = {
    "oneOf": [ScheduledReport.model_json_schema(), ScheduledNotification.model_json_schema()]
}
# Exactly one of cron and every (null counts as absent); timezone only with cron.
_TIMING_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {
            "required": ["cron"],
            "properties": {"cron": {"type": "string"}, "every": {"type": "null"}},
        },
        {
            "required": ["every"],
            "properties": {
                "every": {"type": "integer"},
                "cron": {"type": "null"},
                "timezone": {"type": "null"},
            },
        },
    ]
}


Every = Annotated[int, Field(ge=1, le=EVERY_MAX_S, strict=True), BeforeValidator(integral)]


class ScheduleJob(_Request):
    """The job of each run: its queue; the rest of it is the queue's POST body."""

    queue: Literal["reports", "notifications"]


class ScheduleCreate(_Request):
    model_config = ConfigDict(
        extra="ignore", str_strip_whitespace=False, json_schema_extra=_TIMING_SCHEMA
    )

    cron: StrictStr | None = Field(
        None,
        description="Five fields of standard cron that match some future time (else 422).",
        examples=["0 8 * * 1-5"],
    )
    every: Every | None = Field(
        None, description="Seconds between runs; the first run is at creation."
    )
    timezone: StrictStr | None = Field(
        None,
        description="An IANA name this host knows (else 422); only with cron; default UTC.",
        examples=["Europe/Paris"],
    )
    job: Annotated[ScheduleJob, WithJsonSchema(JOB_SCHEMA)] = Field(
        description="A POST /reports or /notifications body plus its queue."
    )


class SchedulePublic(BaseModel):
    scheduleId: str
    cron: str | SkipJsonSchema[None] = Field(None, json_schema_extra=absent_when_unset)
    every: Annotated[int, Field(ge=1)] | SkipJsonSchema[None] = Field(
        None, json_schema_extra=absent_when_unset
    )
    timezone: str | None = Field(description="The cron schedule's; null for every.")
    job: dict[str, str] = Field(description="The job's queue and body, values as strings.")
    createdAt: str | None
    nextRunAt: str | None
    lastRunAt: str | None
    lastJobId: str | None


class ScheduleList(BaseModel):
    items: list[SchedulePublic]


def parse_schedule(body: dict[str, Any]) -> tuple[ScheduleSpec, str | None]:
    """The schedule a valid POST /schedules body asks for, and its job's webhookUrl.

    Raises InvalidInput with every broken rule (a field of the job is `job.<field>`)."""
    request = validate_body(ScheduleCreate, body)
    errors = _timing_errors(request)
    job_body = {k: v for k, v in body["job"].items() if k != "queue" and v is not None}
    errors += [
        FieldError(f"job.{name}", "not allowed in a schedule's job")
        for name in _NOT_IN_A_SCHEDULE
        if name in job_body
    ]
    model = _JOB_MODELS[QueueName(request.job.queue)]
    try:
        job = validate_body(model, job_body)
    except InvalidInput as err:
        errors += [FieldError(f"job.{e.field}", e.message) for e in err.errors]
    if errors:
        raise InvalidInput("the request breaks the rules below", errors)
    fields = job.model_dump(exclude_none=True)
    spec = ScheduleSpec(
        queue=QueueName(request.job.queue),
        job={k: str(v) for k, v in fields.items()},
        cron=request.cron,
        every_s=request.every,
        timezone=request.timezone or UTC,
    )
    return spec, job.webhookUrl


def _timing_errors(request: ScheduleCreate) -> list[FieldError]:
    if (request.cron is None) == (request.every is None):
        return [FieldError("cron", "give exactly one of cron or every")]
    if request.every is not None:
        if request.timezone is not None:
            return [FieldError("timezone", "timezone goes with cron only")]
        return []
    timezone = UTC if request.timezone is None else request.timezone
    try:
        check_timezone(timezone)
    except ValueError as err:
        return [FieldError("timezone", str(err))]
    try:
        check_cron(str(request.cron), timezone)
    except ValueError as err:
        return [FieldError("cron", str(err))]
    return []
