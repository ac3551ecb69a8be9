"""POST /schedules: the request model and its cross-field rules, and the schedule view model."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictInt, StrictStr

from errand.api.http.body import validate_body
from errand.api.schemas import NotificationCreate, ReportCreate, _Request
from errand.errors import FieldError, InvalidInput
from errand.keys import QueueName
from errand.queue.schedules import UTC, ScheduleSpec, check_cron, check_timezone

EVERY_MAX_S = 365 * 24 * 3600
# Absolute times mean nothing in a job that recurs: each run is due at its own tick.
_NOT_IN_A_SCHEDULE = ("sendAt", "expiresAt")
_JOB_MODELS: dict[str, type[ReportCreate] | type[NotificationCreate]] = {
    QueueName.REPORTS: ReportCreate,
    QueueName.NOTIFICATIONS: NotificationCreate,
}


class ScheduleJob(_Request):
    """The job of each run: its queue; the rest of it is the queue's POST body."""

    queue: Literal["reports", "notifications"]


class ScheduleCreate(_Request):
    cron: StrictStr | None = Field(None, description="Five fields of standard cron.")
    every: Annotated[StrictInt, Field(ge=1, le=EVERY_MAX_S)] | None = Field(
        None, description="Seconds between runs; the first run is at creation."
    )
    timezone: StrictStr | None = Field(None, description="IANA name (only with cron); UTC.")
    job: ScheduleJob = Field(description="A POST /reports or /notifications body plus queue.")


class SchedulePublic(BaseModel):
    scheduleId: str
    cron: str | None = None
    every: int | None = None
    timezone: str | None
    job: dict[str, Any]
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
