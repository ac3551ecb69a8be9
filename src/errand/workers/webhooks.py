"""The webhook delivery processor (filled in by the webhooks capability)."""

from __future__ import annotations

from typing import Any

from bullmq import Job

from errand.settings import Settings


class WebhookProcessor:
    def __init__(self, settings: Settings, redis: Any) -> None:
        self.settings = settings
        self.redis = redis

    async def __call__(self, job: Job, token: str) -> dict[str, Any]:
        return {"delivered": False}
