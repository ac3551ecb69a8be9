"""/schedules: recurring reports and notifications, each the caller's own."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from errand.api.caller import Caller, current_caller
from errand.api.deps import Services, services
from errand.api.gate import ClientRoute
from errand.api.http.body import read_json_object
from errand.api.http.responses import json_response
from errand.api.routes._openapi import created, json_body
from errand.api.schedule_schemas import ScheduleCreate, ScheduleList, SchedulePublic, parse_schedule
from errand.queue.schedules import (
    create_schedule,
    delete_schedule,
    get_schedule,
    list_schedules,
    schedule_view,
)
from errand.webhooks.ssrf import check_webhook_destination

router = APIRouter(tags=["schedules"], route_class=ClientRoute)


@router.post(
    "/schedules",
    status_code=201,
    openapi_extra=json_body(ScheduleCreate),
    responses=created(SchedulePublic, "/schedules/{scheduleId}: the schedule."),
)
async def post_schedule(
    request: Request, svc: Services = Depends(services), caller: Caller = Depends(current_caller)
) -> Response:
    """Create a schedule: `cron` (+ `timezone`) or `every` seconds; each run is a new job."""
    body = await read_json_object(request, svc.settings.max_body_bytes)
    spec, webhook_url = parse_schedule(body)
    await check_webhook_destination(webhook_url, allow_private=svc.settings.webhook_allow_private)
    schedule = await create_schedule(svc.queues, caller.client_id, spec)
    location = f"/schedules/{schedule.schedule_id}"
    return json_response(schedule_view(schedule), 201, {"Location": location})


@router.get("/schedules", response_model=ScheduleList)
async def get_schedules(
    svc: Services = Depends(services), caller: Caller = Depends(current_caller)
) -> Response:
    """The caller's schedules, oldest first."""
    found = await list_schedules(svc.queues, caller.client_id)
    return json_response({"items": [schedule_view(s) for s in found]})


@router.get("/schedules/{schedule_id}", response_model=SchedulePublic)
async def get_one_schedule(
    schedule_id: str, svc: Services = Depends(services), caller: Caller = Depends(current_caller)
) -> Response:
    """One schedule; another client's answers like an unknown one (404)."""
    schedule = await get_schedule(svc.queues, caller.client_id, schedule_id)
    return json_response(schedule_view(schedule))


@router.delete("/schedules/{schedule_id}", status_code=204)
async def remove_schedule(
    schedule_id: str, svc: Services = Depends(services), caller: Caller = Depends(current_caller)
) -> Response:
    """Delete a schedule: no run starts after this answer (a job already running runs on)."""
    await delete_schedule(svc.queues, caller.client_id, schedule_id)
    return Response(status_code=204)
