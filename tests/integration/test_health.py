"""Liveness, readiness across a Redis outage, and live workers in GET /admin/queues."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from errand.jobids import QueueName
from errand.server.embedded import EmbeddedValkey
from support.processes import errand_env, processes
from support.stack import Stack, serve_api
from support.stack import test_settings as settings_for
from support.waiting import wait_for


async def test_healthz_answers_200(stack: Stack) -> None:
    reply = await stack.http.get("/healthz")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok"}


async def test_readyz_turns_503_while_redis_is_down_and_200_when_it_returns(
    tmp_path: Path,
) -> None:
    valkey = EmbeddedValkey(tmp_path / "valkey")  # our own server: this test stops it
    valkey.start()
    try:
        settings = settings_for(valkey.url)
        async with (
            serve_api(settings) as base,
            httpx.AsyncClient(base_url=base, timeout=10) as http,
        ):

            async def readyz() -> tuple[int, dict[str, Any], float]:
                started = time.monotonic()
                reply = await http.get("/readyz")
                return reply.status_code, reply.json(), time.monotonic() - started

            assert (await readyz())[:2] == (200, {"status": "ready"})

            await asyncio.to_thread(valkey.stop)
            _, body, took_s = await wait_for(readyz, lambda r: r[0] == 503, what="readyz 503")
            assert body["type"] == "urn:errand:problem:not-ready"
            assert body["status"] == 503 and body["title"] == "Service Unavailable"
            assert "redis" in body["detail"]
            assert took_s < 3, "readiness must answer promptly while Redis is down"
            down = await http.get("/readyz")
            assert down.headers["content-type"] == "application/problem+json"
            assert (await http.get("/healthz")).status_code == 200, "liveness ignores Redis"

            await asyncio.to_thread(valkey.start)  # same port, same data dir
            await wait_for(readyz, lambda r: r[0] == 200, what="readyz 200 again")
            metrics = await http.get("/metrics")
            assert metrics.status_code == 200
    finally:
        await asyncio.to_thread(valkey.stop)


async def admin_queues(stack: Stack) -> dict[str, Any]:
    reply = await stack.http.get("/admin/queues", headers=stack.admin)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def seen_age_s(worker: dict[str, Any]) -> float:
    seen = datetime.fromisoformat(worker["lastSeen"].replace("Z", "+00:00"))
    return (datetime.now(UTC) - seen).total_seconds()


async def test_admin_queues_shows_live_workers_and_drops_a_stopped_one(stack: Stack) -> None:
    reports_only = await stack.start_worker([QueueName.REPORTS])
    both = await wait_for(
        lambda: admin_queues(stack), lambda b: len(b["workers"]) == 2, what="two live workers"
    )
    by_id = {w["id"]: w for w in both["workers"]}
    assert set(by_id) == {w.id for w in stack.workers}
    assert by_id[reports_only.id]["queues"] == ["reports"]
    assert all(seen_age_s(w) < 5 for w in both["workers"]), both["workers"]
    counts = {q["name"]: q["workers"] for q in both["queues"]}
    assert counts == {"reports": 2, "notifications": 1, "webhooks": 1}

    first_seen = by_id[reports_only.id]["lastSeen"]
    await wait_for(
        lambda: admin_queues(stack),
        lambda b: any(
            w["id"] == reports_only.id and w["lastSeen"] > first_seen for w in b["workers"]
        ),
        what="a fresh heartbeat",
    )

    await reports_only.stop()  # a clean stop removes its entry at once
    stack.workers.remove(reports_only)
    after = await admin_queues(stack)
    assert [w["id"] for w in after["workers"]] == [stack.workers[0].id]
    assert {q["name"]: q["workers"] for q in after["queues"]}["reports"] == 1


async def test_a_killed_worker_disappears_after_three_missed_heartbeats(
    stack: Stack, tmp_path: Path
) -> None:
    settings = stack.settings
    env = errand_env(redis_url=settings.redis_url, queue_prefix=settings.queue_prefix)
    with processes(tmp_path) as procs:
        worker = procs.worker(env, "--queues", "notifications")

        def pids(body: dict[str, Any]) -> set[int]:
            return {int(w["pid"]) for w in body["workers"]}

        await wait_for(
            lambda: admin_queues(stack),
            lambda b: worker.pid in pids(b),
            timeout_s=30,
            what="the subprocess worker's heartbeat",
        )
        worker.send(signal.SIGKILL)  # no clean stop: its entry just stops being refreshed
        await asyncio.to_thread(worker.wait, 10)
        killed_at = time.monotonic()
        await wait_for(
            lambda: admin_queues(stack),
            lambda b: worker.pid not in pids(b),
            timeout_s=10,
            what="the killed worker to drop out",
        )
        beats = settings.heartbeat_seconds
        assert time.monotonic() - killed_at <= 3 * beats + 2
