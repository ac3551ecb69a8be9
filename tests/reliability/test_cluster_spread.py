"""Partitioned queues spread over a real 3-master Valkey Cluster: 20,000 notifications
through the HTTP API, drained by worker processes; each master holds about a third of
the job hashes and serves about a third of the commands, and every email goes out once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest

from conftest import message_id
from errand.redisio.connection import is_cluster
from support.cluster import ValkeyCluster, spread
from support.processes import Processes, env_for, wait_log
from support.stack import Stack, run_stack
from support.stack import test_settings as settings_for
from support.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

JOBS = 20_000
BATCH = 1000
USERS = 4000
SHARE_PCT = (100 / 3 - 10, 100 / 3 + 10)


@pytest.fixture(scope="module")
def spread_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    cluster = ValkeyCluster(tmp_path_factory.mktemp("spread"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def spread_api(spread_cluster: ValkeyCluster) -> AsyncIterator[Stack]:
    # The production backoff (1 s, 2 s, 4 s): a transient client error under load is retried
    # across seconds, not within the 0.3 s the fast test defaults span.
    settings = settings_for(
        spread_cluster.url, email_send_ms=0, notify_concurrency=64, notify_backoff_ms=1000
    )
    assert is_cluster(settings) and settings.partitions > 1  # the default partitioning
    async with run_stack(settings, with_worker=False) as stack:
        yield stack


async def post_all(stack: Stack) -> list[str]:
    """JOBS notifications through POST /notifications/batch, users varied; their job ids."""
    kinds = ("welcome", "password-reset", "order-confirmed")

    async def one_batch(start: int) -> list[str]:
        items = [
            {"type": kinds[n % 3], "userId": f"user-{n % USERS}"}
            for n in range(start, start + BATCH)
        ]
        reply = await stack.http.post("/notifications/batch", json={"items": items})
        assert reply.status_code == 200, reply.text
        results = reply.json()["items"]
        assert all(r["status"] == 202 for r in results), results[:3]
        return [r["jobId"] for r in results]

    ids: list[str] = []
    for start in range(0, JOBS, 4 * BATCH):  # 4 batches at a time
        chunks = await asyncio.gather(
            *(one_batch(s) for s in range(start, min(start + 4 * BATCH, JOBS), BATCH))
        )
        ids += [job_id for chunk in chunks for job_id in chunk]
    return ids


async def sent_total(stack: Stack) -> int:
    return sum([await stack.redis.llen(key) for key in stack.keys.outboxes()])


async def sent_ids(stack: Stack) -> list[str]:
    """Message-IDs in every partition's simulated outbox (one entry per email sent)."""
    ids: list[str] = []
    for key in stack.keys.outboxes():
        ids += [orjson.loads(item)["messageId"] for item in await stack.redis.lrange(key, 0, -1)]
    return ids


def job_hashes(cluster: ValkeyCluster, stack: Stack) -> dict[int, int]:
    """BullMQ notification job hashes on each master (TYPE hash, the job-key shape)."""
    sample = stack.keys.job("notifications", "ntf_" + "0" * 32)  # type: ignore[arg-type]
    pattern = "*" + sample[sample.index("}") + 1 :].replace("ntf_" + "0" * 32, "ntf_*")
    counts: dict[int, int] = {}
    for node in cluster.masters():
        with cluster.client(node) as client:
            found = client.scan_iter(match=pattern, count=1000, _type="hash")
            counts[node.port] = sum(1 for _ in found)
    return counts


async def test_twenty_thousand_notifications_spread_over_three_masters(
    spread_cluster: ValkeyCluster, spread_api: Stack, procs: Processes, tmp_path: Path
) -> None:
    stack = spread_api
    env = env_for(stack.settings)
    before = spread_cluster.command_calls()
    started = time.monotonic()
    ids = await post_all(stack)
    posted_s = time.monotonic() - started
    assert len(set(ids)) == JOBS

    workers = [procs.worker(env, "--queues", "notifications", name=f"w{n}") for n in range(2)]
    for worker in workers:
        wait_log(worker, " started on ", timeout_s=60)
    try:
        await wait_for(
            lambda: sent_total(stack),
            lambda total: total >= JOBS,
            timeout_s=300,
            what=f"{JOBS} emails sent",
        )
    except AssertionError as timeout:
        missing = sorted(set(ids) - {m[1:].split("@")[0] for m in await sent_ids(stack)})
        views = [(await stack.http.get(f"/jobs/{job_id}")).json() for job_id in missing[:5]]
        raise AssertionError(f"{len(missing)} never sent, e.g. {views}") from timeout
    drained_s = time.monotonic() - started - posted_s
    keys = job_hashes(spread_cluster, stack)
    after = spread_cluster.command_calls()
    commands = {port: after[port] - before[port] for port in after}

    print(
        f"\n{JOBS} notifications: posted in {posted_s:.1f} s, drained in {drained_s:.1f} s; "
        f"job hashes per master {keys} ({[f'{p:.1f}%' for p in spread(keys)]}); "
        f"commands per master {commands} ({[f'{p:.1f}%' for p in spread(commands)]})"
    )
    sent = await sent_ids(stack)
    assert len(sent) == JOBS, "every email exactly once"
    assert sorted(sent) == sorted(message_id(job_id) for job_id in ids)
    assert sum(keys.values()) == JOBS and len(keys) == 3
    low, high = SHARE_PCT
    assert all(low <= share <= high for share in spread(keys)), keys
    assert all(low <= share <= high for share in spread(commands)), commands
    views = [(await stack.http.get(f"/jobs/{job_id}")).json() for job_id in ids[:: JOBS // 50]]
    assert {view["status"] for view in views} == {"completed"}, views[:2]
    for worker in workers:
        assert worker.terminate() == 0
