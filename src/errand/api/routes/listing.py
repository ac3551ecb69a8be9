"""GET /jobs: the caller's reports and notifications, newest first, a page at a time."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import WithJsonSchema
from starlette.requests import Request
from starlette.responses import Response

from errand.api import cursors
from errand.api.caller import Caller, current_caller
from errand.api.deps import Services, services
from errand.api.gate import ClientRoute
from errand.api.http.responses import json_response
from errand.api.schemas import REPORT_TYPE_PATTERN, USER_ID_MAX, JobPage
from errand.errors import FieldError, InvalidInput
from errand.jobids import QueueName
from errand.queue.jobindex import LISTED_QUEUES
from errand.queue.listing import JobFilter, JobLister
from errand.queue.views import job_view

router = APIRouter(tags=["jobs"], route_class=ClientRoute)

STATUSES = ("scheduled", "waiting", "active", "completed", "failed", "canceled", "expired")
LIMIT_DEFAULT, LIMIT_MAX = 20, 100
_TYPE = re.compile(REPORT_TYPE_PATTERN)
_PARAMS = ("queue", "status", "type", "userId", "createdAfter", "createdBefore", "limit", "cursor")
_ONE_STATUS = "|".join(STATUSES)
_STATUSES = f"^({_ONE_STATUS})(,({_ONE_STATUS}))*$"


def _schema(**schema: object) -> WithJsonSchema:
    """A query parameter's schema as the document states it (this route checks its own
    parameters, so that each bad one is named in its 422)."""
    return WithJsonSchema({"type": "string", **schema})


@router.get("/jobs", response_model=JobPage)
async def list_jobs(
    request: Request,
    queue: Annotated[str | None, Query(), _schema(enum=[str(q) for q in LISTED_QUEUES])] = None,
    status: Annotated[
        str | None, Query(description="Statuses, comma-separated."), _schema(pattern=_STATUSES)
    ] = None,
    kind: Annotated[
        str | None,
        Query(alias="type", description="A notification's type or a report's reportType."),
        _schema(pattern=REPORT_TYPE_PATTERN),
    ] = None,
    user_id: Annotated[
        str | None, Query(alias="userId"), _schema(minLength=1, maxLength=USER_ID_MAX)
    ] = None,
    created_after: Annotated[
        str | None,
        Query(alias="createdAfter", description="Exclusive; without an offset, UTC."),
        _schema(format="date-time"),
    ] = None,
    created_before: Annotated[
        str | None,
        Query(alias="createdBefore", description="Exclusive; without an offset, UTC."),
        _schema(format="date-time"),
    ] = None,
    limit: Annotated[
        str | None,
        Query(description=f"Jobs per page, default {LIMIT_DEFAULT}."),
        _schema(type="integer", minimum=1, maximum=LIMIT_MAX),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(
            description="The `nextCursor` of the page before, with the same filters "
            "(a cursor this server did not make: 422)."
        ),
        _schema(),
    ] = None,
    svc: Services = Depends(services),
    caller: Caller = Depends(current_caller),
) -> Response:
    """The caller's jobs, newest first (createdAt, then jobId); `nextCursor` is null on the
    last page. A page examines a bounded number of index entries, so with selective
    filters it may hold fewer than `limit` jobs and still carry a `nextCursor`."""
    _check_single(request)
    flt = job_filter(caller.client_id, queue, status, kind, user_id, created_after, created_before)
    size = _limit(limit)
    key = await cursors.cursor_key(svc.redis, svc.queues.keys)
    after, as_of = cursors.decode(key, flt, cursor) if cursor is not None else (None, None)
    page = await JobLister(svc.queues, svc.settings.list_scan_budget).page(flt, size, after, as_of)
    next_cursor = None
    if page.next is not None:
        next_cursor = cursors.encode(key, flt, page.next, page.as_of)
    content = {"items": [job_view(snap) for snap in page.jobs], "nextCursor": next_cursor}
    return json_response(content, 200)


def job_filter(
    client_id: str,
    queue: str | None,
    status: str | None,
    kind: str | None,
    user_id: str | None,
    created_after: str | None,
    created_before: str | None,
) -> JobFilter:
    """The filters of a listing. Raises InvalidInput naming every bad parameter."""
    errors: list[FieldError] = []
    queues: tuple[QueueName, ...] = LISTED_QUEUES
    if queue is not None:
        if queue not in {str(q) for q in LISTED_QUEUES}:
            errors.append(FieldError("queue", "must be reports or notifications"))
        else:
            queues = (QueueName(queue),)
    statuses = frozenset(status.split(",")) if status is not None else frozenset()
    if status is not None and not statuses <= set(STATUSES):
        errors.append(FieldError("status", f"each status must be one of {', '.join(STATUSES)}"))
    if kind is not None and not _TYPE.fullmatch(kind):
        errors.append(FieldError("type", "must be 1-64 characters of A-Z a-z 0-9 _ . -"))
    if user_id is not None and not 1 <= len(user_id) <= USER_ID_MAX:
        errors.append(FieldError("userId", f"must be 1-{USER_ID_MAX} characters"))
    after = _instant_ms("createdAfter", created_after, errors)
    before = _instant_ms("createdBefore", created_before, errors)
    if errors:
        raise InvalidInput("the query breaks the rules below", errors)
    return JobFilter(client_id, queues, statuses, kind, user_id, after, before)


def _instant_ms(name: str, text: str | None, errors: list[FieldError]) -> float | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        errors.append(FieldError(name, "must be an ISO 8601 timestamp"))
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the contract's timestamps are UTC
    return moment.timestamp() * 1000


def _limit(text: str | None) -> int:
    if text is None:
        return LIMIT_DEFAULT
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= LIMIT_MAX):
        raise InvalidInput(
            "the query breaks the rules below",
            [FieldError("limit", f"must be an integer from 1 to {LIMIT_MAX}")],
        )
    return int(text)


def _check_single(request: Request) -> None:
    """A parameter given twice is ambiguous: 422 rather than a guess."""
    twice = [name for name in _PARAMS if len(request.query_params.getlist(name)) > 1]
    if twice:
        raise InvalidInput(
            "the query breaks the rules below",
            [FieldError(name, "given more than once") for name in twice],
        )
