"""Every operation of the errand API v2, written once for both clients (see _protocol)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Generator, Iterable
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from errand.client._binding import call, stream
from errand.client._protocol import (
    Emit,
    NextLine,
    Op,
    OpenStream,
    Request,
    Session,
    Sleep,
    SseParser,
    Step,
    fetch,
    raise_for,
    send,
)
from errand.client.errors import EventStreamLost, WaitTimeout
from errand.client.models import (
    Accepted,
    BatchResult,
    JobPage,
    JobView,
    NotificationRequest,
    NotificationType,
    NotificationView,
    ReportRequest,
    Schedule,
    ScheduleList,
    rfc3339,
)

MAX_WAIT_S = 60.0  # the server's ceiling for GET /jobs/{id}?wait=
LONG_POLL_GRACE_S = 10.0  # read timeout beyond the wait the server was asked for
STREAM_READ_TIMEOUT_S = 45.0  # the server sends a heartbeat every 15 s
SUBMIT_RETRY_STATUSES = frozenset({409, 429, 503})


def _job(job_id: str) -> str:
    return f"/jobs/{quote(job_id, safe='')}"


def _submit(session: Session, path: str, body: dict[str, Any], key: str | None) -> Op[Accepted]:
    key = key or str(uuid.uuid4())
    request = Request(
        "POST",
        path,
        json=body,
        headers={"Idempotency-Key": key},
        retry_statuses=SUBMIT_RETRY_STATUSES,
    )
    response = yield from send(session, request)
    accepted = Accepted.model_validate_json(response.content)
    yield Emit(accepted.model_copy(update={"idempotency_key": key}))


def submit_report(
    session: Session,
    user_id: str | int,
    report_type: str,
    *,
    webhook_url: str | None = None,
    idempotency_key: str | None = None,
) -> Op[Accepted]:
    """POST /reports. A UUID4 Idempotency-Key is made when none is given and kept on
    every retry, so a retried submit never makes two jobs. Raises ValidationFailed,
    RateLimited, ServiceUnavailable, TransportError."""
    body = ReportRequest(user_id, report_type, webhook_url).body()
    yield from _submit(session, "/reports", body, idempotency_key)


def submit_notification(
    session: Session,
    type: NotificationType,
    user_id: str | int,
    *,
    webhook_url: str | None = None,
    send_at: datetime | None = None,
    expires_at: datetime | None = None,
    idempotency_key: str | None = None,
) -> Op[Accepted]:
    """POST /notifications; `send_at`/`expires_at` must be timezone-aware (else
    ValueError). Idempotency and errors as for submit_report."""
    body = NotificationRequest(type, user_id, webhook_url, send_at, expires_at).body()
    yield from _submit(session, "/notifications", body, idempotency_key)


def submit_notifications(session: Session, items: Iterable[NotificationRequest]) -> Op[BatchResult]:
    """POST /notifications/batch: one result per item, in order. Every item without an
    `idempotency_key` gets a UUID4 one, so the batch can be retried safely."""
    bodies = [
        {**item.body(), "idempotencyKey": item.idempotency_key or str(uuid.uuid4())}
        for item in items
    ]
    request = Request("POST", "/notifications/batch", json={"items": bodies})
    yield from fetch(session, request, BatchResult.model_validate_json)


def get(session: Session, job_id: str) -> Op[JobView]:
    """GET /jobs/{id}: the job now. Raises NotFound."""
    yield from fetch(session, Request("GET", _job(job_id)), JobView.model_validate_json)


def get_notification(session: Session, job_id: str) -> Op[NotificationView]:
    """GET /notifications/{id}, with its webhook's delivery state. Raises NotFound."""
    request = Request("GET", f"/notifications/{quote(job_id, safe='')}")
    yield from fetch(session, request, NotificationView.model_validate_json)


def report_result(session: Session, job_id: str) -> Op[dict[str, Any]]:
    """GET /reports/{id}/result: the report. Raises Conflict (not completed: see
    `job_status`) or NotFound."""
    request = Request("GET", f"/reports/{quote(job_id, safe='')}/result")
    yield from fetch(session, request, json.loads)


def wait(session: Session, job_id: str, timeout_s: float = 60.0) -> Op[JobView]:
    """The job once final, by long-polls (`?wait=`, at most 60 s each), not a sleep
    loop. Raises WaitTimeout (with the last view) after `timeout_s`, NotFound."""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining_s = min(deadline - time.monotonic(), MAX_WAIT_S)
        params = {"wait": f"{remaining_s:.3f}"} if remaining_s >= 0.001 else None
        request = Request(
            "GET",
            _job(job_id),
            params=params,
            read_timeout_s=max(remaining_s, 0) + LONG_POLL_GRACE_S,
        )
        response = yield from send(session, request)
        view = JobView.model_validate_json(response.content)
        if view.is_final:
            yield Emit(view)
            return
        if time.monotonic() >= deadline:
            raise WaitTimeout(job_id, timeout_s, view)


def cancel(session: Session, job_id: str) -> Op[JobView]:
    """POST /jobs/{id}/cancel: the job view (`canceled`, or still `active` with
    `cancel_requested` for a running report). Raises Conflict (see `job_status`),
    NotFound. Never retried."""
    request = Request("POST", f"{_job(job_id)}/cancel", retryable=False)
    yield from fetch(session, request, JobView.model_validate_json)


def _read_events(
    parser: SseParser, last: JobView | None
) -> Generator[Step | Emit[JobView], Any, JobView | None]:
    """Emit the status events of one connection until it ends; the last view seen."""
    while True:
        line = yield NextLine()
        if not isinstance(line, str):
            return last
        event = parser.feed(line)
        if event is None or event.event != "status":
            continue
        view = JobView.model_validate_json("\n".join(event.data))
        if view != last:  # a resumed stream starts with the job as it is now
            yield Emit(view)
        last = view
        if view.is_final:
            return view


def events(session: Session, job_id: str) -> Op[JobView]:
    """The job's status events (GET /jobs/{id}/events), ending after the final one.
    A dropped stream is resumed with Last-Event-ID; raises EventStreamLost after
    `event_reconnects` failed attempts in a row, NotFound for an unknown job."""
    parser, last, failures = SseParser(), None, 0
    while last is None or not last.is_final:
        headers = {"Accept": "text/event-stream"}
        if parser.last_event_id is not None:
            headers["Last-Event-ID"] = parser.last_event_id
        request = Request(
            "GET", f"{_job(job_id)}/events", headers=headers, read_timeout_s=STREAM_READ_TIMEOUT_S
        )
        outcome = yield OpenStream(request)
        if isinstance(outcome, httpx.Response):
            raise_for(outcome)
            parser = SseParser(last_event_id=parser.last_event_id)  # drop a cut event
            before = parser.last_event_id
            last = yield from _read_events(parser, last)
            failures = 0 if parser.last_event_id != before else failures
        if last is None or not last.is_final:
            failures += 1
            if failures > session.event_reconnects:
                raise EventStreamLost(f"event stream of job {job_id} lost {failures} times")
            yield from _pause(session, failures)


def _pause(session: Session, failures: int) -> Generator[Step, Any, None]:
    policy = session.retry
    yield Sleep(min(policy.backoff_s * 2 ** (failures - 1), policy.max_backoff_s))


def _timestamp(value: datetime | None, name: str) -> str | None:
    return None if value is None else rfc3339(value, name)


def list_jobs(
    session: Session,
    *,
    queue: str | None = None,
    status: str | Iterable[str] | None = None,
    type: str | None = None,
    user_id: str | int | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    page_size: int | None = None,
) -> Op[JobView]:
    """GET /jobs, newest first, following `nextCursor` page after page: every job that
    matched when the first page was read, once. Raises ValidationFailed."""
    filters = {
        "queue": queue,
        "status": status if status is None or isinstance(status, str) else ",".join(status),
        "type": type,
        "userId": None if user_id is None else str(user_id),
        "createdAfter": _timestamp(created_after, "created_after"),
        "createdBefore": _timestamp(created_before, "created_before"),
        "limit": None if page_size is None else str(page_size),
    }
    params = {name: value for name, value in filters.items() if value is not None}
    while True:
        response = yield from send(session, Request("GET", "/jobs", params=params))
        page = JobPage.model_validate_json(response.content)
        for item in page.items:
            yield Emit(item)
        if page.next_cursor is None:
            return
        params = {**params, "cursor": page.next_cursor}


def create_schedule(
    session: Session,
    job: ReportRequest | NotificationRequest,
    *,
    cron: str | None = None,
    every_s: int | None = None,
    timezone: str | None = None,
) -> Op[Schedule]:
    """POST /schedules: exactly one of `cron` or `every_s` (else ValueError). Never
    retried. Raises ValidationFailed."""
    if (cron is None) == (every_s is None):
        raise ValueError("give exactly one of cron or every_s")
    queue = "reports" if isinstance(job, ReportRequest) else "notifications"
    body: dict[str, Any] = {"job": {**job.body(), "queue": queue}}
    body.update({"cron": cron} if cron is not None else {"every": every_s})
    if timezone is not None:
        body["timezone"] = timezone
    request = Request("POST", "/schedules", json=body, retryable=False)
    yield from fetch(session, request, Schedule.model_validate_json)


def list_schedules(session: Session) -> Op[list[Schedule]]:
    """GET /schedules: the caller's schedules."""
    response = yield from send(session, Request("GET", "/schedules"))
    yield Emit(ScheduleList.model_validate_json(response.content).items)


def get_schedule(session: Session, schedule_id: str) -> Op[Schedule]:
    """GET /schedules/{id}. Raises NotFound."""
    request = Request("GET", f"/schedules/{quote(schedule_id, safe='')}")
    yield from fetch(session, request, Schedule.model_validate_json)


def delete_schedule(session: Session, schedule_id: str) -> Op[None]:
    """DELETE /schedules/{id}: no run after this. Raises NotFound. Never retried."""
    request = Request("DELETE", f"/schedules/{quote(schedule_id, safe='')}", retryable=False)
    yield from send(session, request)
    yield Emit(None)


class Operations:
    """The API's operations, bound as methods of Client and AsyncClient."""

    submit_report = call(submit_report)
    submit_notification = call(submit_notification)
    submit_notifications = call(submit_notifications)
    get = call(get)
    get_notification = call(get_notification)
    report_result = call(report_result)
    wait = call(wait)
    cancel = call(cancel)
    events = stream(events)
    list_jobs = stream(list_jobs)
    create_schedule = call(create_schedule)
    list_schedules = call(list_schedules)
    get_schedule = call(get_schedule)
    delete_schedule = call(delete_schedule)
