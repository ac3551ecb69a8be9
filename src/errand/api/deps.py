"""Per-process services the routes share, hung on `app.state` by the lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends
from starlette.requests import Request

from errand.api.events import JobEventHub
from errand.api.gate import Gate
from errand.processors.webhooks import WebhookEvents
from errand.queue.facade import JobQueues
from errand.settings import Settings


@dataclass
class Services:
    settings: Settings
    redis: Any
    queues: JobQueues
    events: JobEventHub
    webhooks: WebhookEvents
    gate: Gate


async def services(request: Request) -> Services:
    """`async` on purpose: FastAPI runs a plain `def` dependency in a thread pool, per request."""
    svc: Services = request.app.state.services
    return svc


ServicesDep = Annotated[Services, Depends(services)]
"""A route parameter that receives the process's `Services`."""
