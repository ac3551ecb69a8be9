"""Operations: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from errand.api.deps import Services, services
from errand.api.http.problems import ProblemRoute
from errand.api.http.responses import json_response, problem
from errand.api.schemas import Health, Ready
from errand.metrics.gauges import QueueGauges
from errand.metrics.registry import CONTENT_TYPE

router = APIRouter(tags=["operations"], route_class=ProblemRoute)

READY_TIMEOUT_S = 1.0


@router.get("/healthz", response_model=Health)
async def healthz() -> Response:
    """200 while the process lives."""
    return json_response({"status": "ok"})


@router.get(
    "/readyz",
    response_model=Ready,
    responses={503: {"description": "Redis does not answer (no Retry-After: a probe)."}},
)
async def readyz(svc: Services = Depends(services)) -> Response:
    """200 when Redis answers within a second, 503 with the reason otherwise."""
    try:
        await asyncio.wait_for(svc.redis.ping(), READY_TIMEOUT_S)
    except TimeoutError:
        reason = f"redis did not answer within {READY_TIMEOUT_S:g} s"
    except Exception as err:
        reason = f"redis is unreachable: {type(err).__name__}"
    else:
        return json_response({"status": "ready"})
    return problem(503, "Service Unavailable", reason, "not-ready")


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    """Prometheus text: jobs by queue and state, job counters and histograms, webhook
    deliveries, emails sent and HTTP requests (see docs/operations.md)."""
    gauges: QueueGauges = request.app.state.queue_gauges
    return Response(await gauges.render(), media_type=CONTENT_TYPE)
