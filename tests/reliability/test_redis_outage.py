"""A Redis outage under light load: the API answers 503 problem documents fast (never a 500,
never a hang), workers reconnect on their own, and everything resumes without a restart."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from errand.server.embedded import EmbeddedValkey
from support.processes import Processes, env_for, wait_log
from support.stack import Stack, run_stack
from support.stack import test_settings as settings_for
from support.waiting import wait_for

OUTAGE_S = 10.0
REQUEST_BOUND_S = 5.0  # no request may take longer than this while Redis is away


@pytest.fixture
async def own_valkey(tmp_path: Path) -> AsyncIterator[EmbeddedValkey]:
    """A Valkey this test may stop, freeze and restart (never the session's shared one)."""
    server = EmbeddedValkey(tmp_path / "valkey")
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            with_pid = server.process.pid
            if server.process.poll() is None:
                os.kill(with_pid, signal.SIGCONT)
        server.stop()


@pytest.fixture
async def outage_stack(own_valkey: EmbeddedValkey) -> AsyncIterator[Stack]:
    settings = settings_for(own_valkey.url, report_seconds=0.5, notify_backoff_ms=200)
    async with run_stack(settings, with_worker=False) as stack:
        yield stack


async def timed(call: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    reply = await call
    return reply, time.monotonic() - started


async def post_both(http: httpx.AsyncClient, tag: str) -> list[httpx.Response]:
    return [
        await http.post("/reports", json={"userId": f"u-{tag}", "reportType": "activity"}),
        await http.post("/notifications", json={"type": "welcome", "userId": f"u-{tag}"}),
    ]


def assert_unavailable(reply: httpx.Response, took_s: float) -> None:
    assert reply.status_code == 503, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    body = reply.json()
    assert body["status"] == 503 and body["title"] and body["detail"]
    assert "Traceback" not in reply.text and "redis://" not in reply.text
    assert int(reply.headers["retry-after"]) >= 1
    assert took_s < REQUEST_BOUND_S, f"a request took {took_s:.1f} s while Redis was away"


async def probe_while_down(stack: Stack, seconds: float) -> dict[str, Any]:
    """Keep sending requests for `seconds`; every one must be a fast 503 (healthz: 200)."""
    http = stack.http
    deadline = time.monotonic() + seconds
    answered, slowest = 0, 0.0
    job_id = "rep_" + "0" * 32
    while time.monotonic() < deadline:
        for call in (
            http.post("/reports", json={"userId": "u-down", "reportType": "activity"}),
            http.post("/notifications", json={"type": "welcome", "userId": "u-down"}),
            http.get(f"/jobs/{job_id}"),
        ):
            reply, took = await timed(call)
            assert_unavailable(reply, took)
            answered += 1
            slowest = max(slowest, took)
        ready, took = await timed(http.get("/readyz"))
        assert ready.status_code == 503 and took < REQUEST_BOUND_S
        assert (await http.get("/healthz")).status_code == 200
    return {"answered": answered, "slowest_s": round(slowest, 2)}


async def all_final(stack: Stack, ids: list[str]) -> list[dict[str, Any]]:
    async def views() -> list[dict[str, Any]]:
        replies = await asyncio.gather(*(stack.http.get(f"/jobs/{i}") for i in ids))
        return [r.json() for r in replies]

    return await wait_for(
        views,
        lambda vs: all(v.get("status") == "completed" for v in vs),
        timeout_s=60,
        what="every job completed after the outage",
    )


async def test_api_answers_503_during_an_outage_and_everything_resumes(
    own_valkey: EmbeddedValkey, outage_stack: Stack, procs: Processes
) -> None:
    stack = outage_stack
    worker = procs.worker(env_for(stack.settings), name="worker")
    wait_log(worker, " started on ", timeout_s=30)
    before = await post_both(stack.http, "before")
    assert all(r.status_code == 202 for r in before)

    own_valkey.stop()  # SIGTERM: the AOF is flushed, the port closes
    down = await probe_while_down(stack, OUTAGE_S)
    own_valkey.start()

    await wait_for(
        lambda: stack.http.get("/readyz"),
        lambda r: r.status_code == 200,
        timeout_s=20,
        what="readyz back to 200",
    )
    after = await post_both(stack.http, "after")
    assert all(r.status_code == 202 for r in after), [r.text for r in after]
    ids = [r.json()["jobId"] for r in [*before, *after]]
    await all_final(stack, ids)
    waited = await stack.http.get(f"/jobs/{after[0].json()['jobId']}", params={"wait": 5})
    assert waited.json()["status"] == "completed"  # the event readers are back too
    assert worker.alive, "the worker must survive the outage without a restart"
    print(f"\n[outage] stopped {OUTAGE_S:g} s: {down}")
    assert worker.terminate() == 0


async def test_a_frozen_redis_gives_bounded_503s_not_hangs(
    own_valkey: EmbeddedValkey, outage_stack: Stack, procs: Processes
) -> None:
    """SIGSTOP: the port still accepts connections but nothing answers (a network partition)."""
    stack = outage_stack
    worker = procs.worker(env_for(stack.settings), name="worker")
    wait_log(worker, " started on ", timeout_s=30)
    before = await post_both(stack.http, "before-freeze")
    assert own_valkey.process is not None
    pid = own_valkey.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        down = await probe_while_down(stack, 6.0)
    finally:
        os.kill(pid, signal.SIGCONT)
    await wait_for(
        lambda: stack.http.get("/readyz"),
        lambda r: r.status_code == 200,
        timeout_s=20,
        what="readyz back to 200",
    )
    after = await post_both(stack.http, "after-freeze")
    assert all(r.status_code == 202 for r in after), [r.text for r in after]
    await all_final(stack, [r.json()["jobId"] for r in [*before, *after]])
    assert worker.alive
    print(f"\n[freeze] stopped 6 s: {down}")
    assert worker.terminate() == 0
