"""The report processor: 'generates' a report in ERRAND_REPORT_SECONDS, stores it with a TTL.

At each progress step (and before storing the result) it checks the job's cancel
flag, which `POST /jobs/{id}/cancel` sets from any API process: a canceled report
stops there, stores nothing and returns errand's `canceled` outcome marker.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import orjson

from errand.clock import iso_ms, now_ms
from errand.keys import ANONYMOUS_CLIENT, Keys
from errand.processors.job import RunningJob
from errand.queue.cancel import CANCELED_WHILE_RUNNING
from errand.queue.outcomes import Outcome, outcome_value
from errand.settings import Settings

PROGRESS_STEPS = 10


def build_report(job_id: str, user_id: str, report_type: str) -> dict[str, Any]:
    """A plausible, deterministic report: a few weekly rows of figures for the user."""
    seed = hashlib.sha256(f"{user_id}/{report_type}".encode()).digest()
    rows = []
    for week in range(1, 5):
        events = 50 + seed[week] * 3
        sessions = 5 + seed[week + 8] % 40
        rows.append(
            {
                "period": f"week-{week}",
                "events": events,
                "sessions": sessions,
                "eventsPerSession": round(events / sessions, 2),
            }
        )
    return {
        "jobId": job_id,
        "userId": user_id,
        "reportType": report_type,
        "generatedAt": iso_ms(now_ms()),
        "rows": rows,
        "totals": {
            "events": sum(r["events"] for r in rows),
            "sessions": sum(r["sessions"] for r in rows),
        },
    }


class ReportProcessor:
    """Works for `report_seconds`, reporting progress, then stores the result."""

    def __init__(self, settings: Settings, redis: Any) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = Keys(settings.queue_prefix, settings.partitions)

    async def __call__(self, job: RunningJob, token: str) -> dict[str, Any]:
        data = job.data
        step_s = self.settings.report_seconds / PROGRESS_STEPS
        cancel_flag = self.keys.cancel_request(str(job.id))
        # Checked before each step and once more before the result is stored.
        for step in range(1, PROGRESS_STEPS + 2):
            if await self.redis.exists(cancel_flag):
                return outcome_value(Outcome.CANCELED, CANCELED_WHILE_RUNNING)
            if step > PROGRESS_STEPS:
                break
            if step_s:
                await asyncio.sleep(step_s)
            if step < PROGRESS_STEPS:
                await job.updateProgress(step * 100 // PROGRESS_STEPS)
        report = build_report(str(job.id), str(data["userId"]), str(data["reportType"]))
        await self.redis.set(
            self.keys.report_result(str(data.get("clientId") or ANONYMOUS_CLIENT), str(job.id)),
            orjson.dumps(report),
            ex=self.settings.result_ttl_seconds,
        )
        return {"rows": len(report["rows"])}
