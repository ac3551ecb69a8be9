"""Per-process services the routes share, hung on `app.state` by the lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from errand.api.events import JobEventHub
from errand.queue.facade import JobQueues
from errand.settings import Settings


@dataclass
class Services:
    settings: Settings
    redis: Any
    queues: JobQueues
    events: JobEventHub


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc
