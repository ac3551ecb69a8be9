"""errand on a real 3-master Valkey Cluster: the API, BullMQ workers and event readers use
RedisCluster clients, and every key of a deployment shares the hash tag's one slot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from conftest import ValkeyCluster, message_id, outbox_ids
from errand.redisio.connection import connect, is_cluster
from support.processes import Processes, env_for, wait_log
from support.stack import Stack, run_stack
from support.stack import test_settings as settings_for
from support.waiting import wait_for


@pytest.fixture
async def cluster_stack(valkey_cluster: ValkeyCluster) -> AsyncIterator[Stack]:
    settings = settings_for(valkey_cluster.url, notify_retries=1, report_seconds=1.0)
    assert is_cluster(settings)
    async with run_stack(settings) as stack:
        yield stack


async def final(stack: Stack, job_id: str) -> dict[str, Any]:
    reply = await stack.http.get(f"/jobs/{job_id}", params={"wait": 20})
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


async def test_cluster_flag_builds_a_cluster_client(valkey_cluster: ValkeyCluster) -> None:
    node = valkey_cluster.nodes[1]
    settings = settings_for(f"redis://{node.host}:{node.port}", redis_cluster=True)
    client = connect(settings)
    try:
        assert type(client).__name__ == "RedisCluster"
        assert await client.ping()
    finally:
        await client.aclose()


async def test_reports_and_notifications_flow_over_the_cluster(
    cluster_stack: Stack, valkey_cluster: ValkeyCluster, procs: Processes
) -> None:
    stack = cluster_stack
    extra = procs.worker(env_for(stack.settings), name="cluster-worker")
    wait_log(extra, " started on ", timeout_s=30)

    reports = [
        (await stack.http.post("/reports", json={"userId": f"u-c{n}", "reportType": "activity"}))
        for n in range(6)
    ]
    notes = [
        (await stack.http.post("/notifications", json={"type": kind, "userId": f"u-c{n}"}))
        for n, kind in enumerate(["welcome", "password-reset", "order-confirmed"] * 2)
    ]
    doomed = await stack.http.post("/notifications", json={"type": "welcome", "userId": "fail-c"})
    assert all(r.status_code == 202 for r in [*reports, *notes, doomed])
    dedup = await stack.http.post("/reports", json={"userId": "u-c5", "reportType": "activity"})
    assert dedup.json()["deduplicated"] is True  # u-c5's report is still in flight
    assert dedup.json()["jobId"] == reports[5].json()["jobId"]

    ids = [r.json()["jobId"] for r in [*reports, *notes]]
    views = await asyncio.gather(*(final(stack, job_id) for job_id in ids))
    assert {v["status"] for v in views} == {"completed"}, views
    result = await stack.http.get(f"/reports/{ids[0]}/result")
    assert result.status_code == 200 and result.json()["userId"] == "u-c0"
    sent = await outbox_ids(stack)
    assert sorted(sent) == sorted(message_id(r.json()["jobId"]) for r in notes)

    failed = await final(stack, doomed.json()["jobId"])
    assert failed["status"] == "failed"
    dlq = (await stack.http.get("/admin/dlq", headers=stack.admin)).json()
    assert [item["jobId"] for item in dlq["items"]] == [doomed.json()["jobId"]]
    queues = (await stack.http.get("/admin/queues", headers=stack.admin)).json()
    by_name = {q["name"]: q for q in queues["queues"]}
    assert by_name["reports"]["completed"] == 6 and by_name["notifications"]["completed"] == 6
    assert len(queues["workers"]) == 2

    # Every key of this deployment sits on one node: the hash tag pins them to one slot.
    holders = []
    for node in valkey_cluster.nodes:
        client = aioredis.Redis(host=node.host, port=node.port, decode_responses=True)
        try:
            keys = [k async for k in client.scan_iter(match=f"{stack.settings.queue_prefix}*")]
        finally:
            await client.aclose()
        if keys:
            holders.append((node.port, len(keys)))
    assert len(holders) == 1, holders
    assert extra.terminate() == 0


async def test_idempotency_key_and_long_poll_on_the_cluster(cluster_stack: Stack) -> None:
    stack = cluster_stack
    body = {"type": "welcome", "userId": "u-idem-c"}
    headers = {"Idempotency-Key": "cluster-key-1"}
    first = await stack.http.post("/notifications", json=body, headers=headers)
    again = await stack.http.post("/notifications", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.content == again.content
    view = await final(stack, first.json()["jobId"])
    assert view["status"] == "completed"
    events = await stack.http.get(f"/jobs/{first.json()['jobId']}/events")
    assert "event: status" in events.text


async def test_a_schedule_runs_and_stops_on_the_cluster(cluster_stack: Stack) -> None:
    stack = cluster_stack
    body = {"every": 1, "job": {"queue": "reports", "userId": "u-sch-c", "reportType": "daily"}}
    created = await stack.http.post("/schedules", json=body)
    assert created.status_code == 201, created.text
    schedule_id = created.json()["scheduleId"]

    async def last_job() -> Any:
        return (await stack.http.get(f"/schedules/{schedule_id}")).json()["lastJobId"]

    first = await wait_for(last_job, what="a first run")
    view = await final(stack, first)
    assert view["status"] == "completed" and view["scheduleId"] == schedule_id
    second = await wait_for(last_job, lambda job_id: job_id not in (None, first), what="a rerun")
    assert int(second.rpartition(":")[2]) > int(first.rpartition(":")[2])
    assert (await stack.http.delete(f"/schedules/{schedule_id}")).status_code == 204
    assert (await stack.http.get("/schedules")).json() == {"items": []}
