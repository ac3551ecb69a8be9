"""Admin routes: the dead-letter queue and queue counts, behind a bearer token."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Depends, Query
from starlette.requests import Request
from starlette.responses import Response

from errand.api.admin_schemas import DeadLetterPage, DeadLetterRetried, QueuesPublic
from errand.api.deps import Services, services
from errand.api.http.problems import ProblemRoute
from errand.api.http.responses import ResponseError, json_response, problem
from errand.api.routes._openapi import problems
from errand.clock import iso_ms
from errand.jobids import QueueName
from errand.metrics.jobs import record_dlq_retry
from errand.queue.dlq import delete_dead_letter, list_dead_letters, retry_dead_letter
from errand.queue.facade import sum_counts
from errand.queue.workers_registry import live_workers
from errand.webhooks.state import webhook_states

router = APIRouter(prefix="/admin", tags=["admin"], route_class=ProblemRoute)


def require_admin(request: Request, svc: Services = Depends(services)) -> None:
    """Bearer token check, in constant time. 401 without a token, 403 with a wrong one."""
    configured = svc.settings.admin_token
    if configured is None or not configured.get_secret_value():
        raise ResponseError(
            problem(
                403,
                "Forbidden",
                "admin routes are disabled: set ERRAND_ADMIN_TOKEN (errand up generates one "
                "and prints it) and send it as 'Authorization: Bearer <token>'",
                "admin-disabled",
            )
        )
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise ResponseError(
            problem(
                401,
                "Unauthorized",
                "send 'Authorization: Bearer <ERRAND_ADMIN_TOKEN>'",
                "unauthorized",
                headers={"WWW-Authenticate": 'Bearer realm="errand-admin"'},
            )
        )
    if not hmac.compare_digest(given.strip().encode(), configured.get_secret_value().encode()):
        raise ResponseError(problem(403, "Forbidden", "the admin token is wrong", "forbidden"))


guarded = APIRouter(dependencies=[Depends(require_admin)], route_class=ProblemRoute)


@guarded.get("/dlq", response_model=DeadLetterPage)
async def get_dlq(
    queue: QueueName | None = Query(default=None),
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0, le=100_000),
    svc: Services = Depends(services),
) -> Response:
    """Every dead-lettered job, newest failure first."""
    total, items = await list_dead_letters(svc.queues, queue, limit, offset)
    return json_response(
        {
            "total": total,
            "items": [
                {
                    "jobId": d.job_id,
                    "queue": str(d.queue),
                    "clientId": d.client_id,
                    "name": d.name,
                    "data": d.data,
                    "failedReason": d.failed_reason,
                    "attemptsMade": d.attempts_made,
                    "failedAt": iso_ms(d.failed_ms),
                }
                for d in items
            ],
        }
    )


@guarded.post(
    "/dlq/{job_id}/retry",
    status_code=202,
    response_model=DeadLetterRetried,
    responses=problems(409),
)
async def post_dlq_retry(job_id: str, svc: Services = Depends(services)) -> Response:
    """Run a dead-lettered job again with a fresh set of attempts (and a new webhook round)."""
    await retry_with_new_webhook_round(svc, job_id)
    record_dlq_retry(job_id)
    return json_response(
        {"jobId": job_id, "status": "waiting", "statusUrl": f"/jobs/{job_id}"}, 202
    )


async def retry_with_new_webhook_round(svc: Services, job_id: str) -> None:
    """Retry the job; its webhook state then shows the next round's event pending, not the
    last round's delivery. Raises NotFound or Conflict as `retry_dead_letter` does."""
    states = webhook_states(svc.settings, svc.redis)
    last_round = await states.current_round(job_id)  # fixed while the job is dead-lettered
    await retry_dead_letter(svc.queues, job_id)
    await states.await_next_round(job_id, last_round)


@guarded.delete("/dlq/{job_id}", status_code=204, responses=problems(409))
async def delete_dlq(job_id: str, svc: Services = Depends(services)) -> Response:
    """Drop a dead-lettered job for good."""
    await delete_dead_letter(svc.queues, job_id)
    return Response(status_code=204)


@guarded.get("/queues", response_model=QueuesPublic)
async def get_queues(svc: Services = Depends(services)) -> Response:
    """Counts per state for every queue, dead-lettered included, and the live workers."""
    workers = await live_workers(svc.redis, svc.queues.keys, svc.settings)
    result = []
    for name in QueueName:
        parts = await svc.queues.partition_counts(name)
        entry: dict[str, Any] = {
            "name": str(name),
            **_state_counts(sum_counts(parts)),
            "workers": sum(1 for w in workers if str(name) in w["queues"]),
        }
        if len(parts) > 1:  # the totals above sum these
            entry["partitions"] = [
                {"partition": p, **_state_counts(counts)} for p, counts in enumerate(parts)
            ]
        result.append(entry)
    return json_response({"queues": result, "workers": workers})


def _state_counts(counts: dict[str, int]) -> dict[str, int]:
    return {
        "waiting": counts["waiting"] + counts["prioritized"] + counts["paused"],
        "active": counts["active"],
        "delayed": counts["delayed"],
        "completed": counts["completed"],
        "failed": counts["failed"],
        "deadLettered": counts["failed"],
    }


router.include_router(guarded)
