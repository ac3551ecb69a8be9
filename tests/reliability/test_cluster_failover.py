"""A master of a 3-master, 3-replica Valkey Cluster SIGKILLed under a stream of POSTs: its
replica takes over and errand carries on. The API answers 503 only for what lives on
the dead master, only while its slots have no master; the acknowledged (202) jobs lost
are counted, and with ERRAND_DURABILITY=strict there are none."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest

from errand.jobids import QueueName, partition_for
from errand.server.embedded import EmbeddedValkey
from support.cluster import FAILOVER_NODE_TIMEOUT_MS, ValkeyCluster
from support.processes import Processes, env_for, wait_log
from support.stack import Stack, run_stack
from support.stack import test_settings as settings_for
from support.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

POSTERS = 8
LOAD_BEFORE_KILL_S = 3.0
LOAD_AFTER_FAILOVER_S = 3.0


@dataclass
class Load:
    """Every POST's outcome: (seconds since the load began, status, job id or "")."""

    started: float = field(default_factory=time.monotonic)
    replies: list[tuple[float, int, str, str]] = field(default_factory=list)
    running: bool = True
    dead_partitions: set[int] = field(default_factory=set)

    def accepted(self) -> list[str]:
        return [job_id for _, status, job_id, _ in self.replies if status == 202]

    def refused(self) -> list[tuple[float, int, str, str]]:
        return [r for r in self.replies if r[1] != 202]


@pytest.fixture
def replicated_cluster(tmp_path: Path) -> Iterator[ValkeyCluster]:
    cluster = ValkeyCluster(
        tmp_path / "cluster", masters=3, replicas=1, node_timeout_ms=FAILOVER_NODE_TIMEOUT_MS
    )
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def failover_api(
    replicated_cluster: ValkeyCluster, request: pytest.FixtureRequest
) -> AsyncIterator[Stack]:
    # The URL names a replica: redis-py takes one seed node from a URL, and a client
    # created after its seed died could not find the cluster (docs/scaling.md).
    seed = next(n for n in replicated_cluster.live_nodes() if n not in replicated_cluster.masters())
    url = f"redis+cluster://{seed.host}:{seed.port}"
    settings = settings_for(url, email_send_ms=0, durability=request.param)
    async with run_stack(settings, with_worker=False) as stack:
        yield stack


async def post_until_stopped(stack: Stack, load: Load, poster: int) -> None:
    n = 0
    while load.running:
        user = f"user-{poster}-{n}"
        n += 1
        try:
            reply = await stack.http.post(
                "/notifications", json={"type": "welcome", "userId": user}
            )
            job_id = reply.json().get("jobId", "") if reply.status_code == 202 else ""
            status = reply.status_code
        except Exception:  # a dropped connection counts as a refusal, not an acknowledgement
            status, job_id = 0, ""
        load.replies.append((time.monotonic() - load.started, status, job_id, user))


def victim(cluster: ValkeyCluster, stack: Stack) -> EmbeddedValkey:
    """A master that holds some partitions but not the client's own slot or the base
    slot: its death must not stop what lives elsewhere."""
    keys = stack.keys
    spared = {cluster.master_of(keys.client_prefix(stack.client_id)).port}
    return next(node for node in cluster.masters() if node.port not in spared)


async def lost_jobs(stack: Stack, job_ids: list[str]) -> list[str]:
    """Acknowledged jobs whose hash is gone (they were never replicated)."""
    lost = []
    for job_id in job_ids:
        key = stack.keys.job(QueueName.NOTIFICATIONS, job_id)
        if not await stack.redis.exists(key):
            lost.append(job_id)
    return lost


async def run_failover(
    cluster: ValkeyCluster, stack: Stack, procs: Processes
) -> tuple[Load, float, float]:
    """Load, kill a master, wait for its replica, load on; (load, kill at, failover s)."""
    worker = procs.worker(env_for(stack.settings), "--queues", "notifications", name="w")
    wait_log(worker, " started on ", timeout_s=60)
    await stack.redis.ping()  # the test's own client learns every node before the kill
    load = Load()
    posters = [asyncio.create_task(post_until_stopped(stack, load, p)) for p in range(POSTERS)]
    try:
        await asyncio.sleep(LOAD_BEFORE_KILL_S)  # a load phase, not a wait for a condition
        dead = victim(cluster, stack)
        load.dead_partitions = {
            p
            for p in range(stack.settings.partitions)
            if cluster.master_of(stack.keys.partition_prefix(p)).port == dead.port
        }
        killed_at = time.monotonic() - load.started
        cluster.kill(dead)
        failover_s = await asyncio.to_thread(cluster.wait_failover, dead, 30.0)
        await asyncio.sleep(LOAD_AFTER_FAILOVER_S)
    finally:
        load.running = False
        await asyncio.gather(*posters)
    return load, killed_at, failover_s


def summary(load: Load, killed_at: float, failover_s: float, lost: list[str]) -> str:
    refused = load.refused()
    window = (refused[0][0] - killed_at, refused[-1][0] - killed_at) if refused else (0.0, 0.0)
    before = [r for r in load.replies if r[0] < killed_at]
    return (
        f"before the kill {len(before) / killed_at:.0f} POSTs/s ({POSTERS} sequential "
        f"posters, {1000 * killed_at * POSTERS / max(len(before), 1):.1f} ms a POST); "
        f"{len(load.replies)} POSTs, {len(load.accepted())} acknowledged, "
        f"{len(refused)} refused ({sorted({r[1] for r in refused})}) from "
        f"{window[0]:+.2f} s to {window[1]:+.2f} s after the kill; failover took "
        f"{failover_s:.2f} s; acknowledged jobs lost: {len(lost)}"
    )


def on_dead(stack: Stack, load: Load, user: str) -> bool:
    return partition_for(stack.client_id, user, stack.settings.partitions) in load.dead_partitions


def refusal_figures(stack: Stack, load: Load) -> str:
    refused = load.refused()
    dead = sum(1 for *_, user in refused if on_dead(stack, load, user))
    return (
        f"refusals by status {dict(Counter(r[1] for r in refused))}; "
        f"{dead} for partitions on the dead master ({len(load.dead_partitions)} of "
        f"{stack.settings.partitions}), {len(refused) - dead} for the others"
    )


async def assert_completes(stack: Stack, job_id: str) -> None:
    await wait_for(
        lambda: stack.http.get(f"/jobs/{job_id}"),
        lambda r: r.status_code == 200 and r.json()["status"] == "completed",
        timeout_s=60,
        what="a job posted after the failover to complete",
    )


async def assert_dead_partitions_drain(stack: Stack, load: Load) -> None:
    """The worker follows the promoted replicas: every job left in the partitions of the
    killed master (a retry included) is taken and finished there."""

    async def left() -> int:
        total = 0
        for p in load.dead_partitions:
            key = partial(stack.keys.queue, QueueName.NOTIFICATIONS, partition=p)
            total += await stack.redis.llen(key("wait")) + await stack.redis.llen(key("active"))
            total += await stack.redis.zcard(key("prioritized"))
            total += await stack.redis.zcard(key("delayed"))
        return total

    await wait_for(left, lambda n: n == 0, timeout_s=120, what="the dead partitions drained")


@pytest.mark.parametrize("failover_api", ["normal"], indirect=True)
async def test_a_killed_master_is_replaced_and_errand_carries_on(
    replicated_cluster: ValkeyCluster, failover_api: Stack, procs: Processes
) -> None:
    stack = failover_api
    load, killed_at, failover_s = await run_failover(replicated_cluster, stack, procs)
    lost = await lost_jobs(stack, load.accepted())
    print("\nnormal durability:", summary(load, killed_at, failover_s, lost))
    print(refusal_figures(stack, load))
    refused = load.refused()
    assert {status for _, status, _, _ in refused} <= {503}, refused[:5]  # never a 500
    window_end = killed_at + failover_s + 3.0
    assert all(killed_at <= at <= window_end for at, *_ in refused), refused
    late = [r for r in load.replies if r[0] > window_end]
    assert late and all(status == 202 for _, status, _, _ in late), "202s after the failover"
    # Only jobs acknowledged before the kill can be lost (asynchronous replication).
    assert not {job_id for at, _, job_id, _ in load.replies if at > window_end} & set(lost)
    await assert_completes(stack, load.accepted()[-1])
    await assert_dead_partitions_drain(stack, load)


@pytest.mark.parametrize("failover_api", ["strict"], indirect=True)
async def test_strict_durability_loses_no_acknowledged_job(
    replicated_cluster: ValkeyCluster, failover_api: Stack, procs: Processes
) -> None:
    stack = failover_api
    load, killed_at, failover_s = await run_failover(replicated_cluster, stack, procs)
    lost = await lost_jobs(stack, load.accepted())
    print("\nstrict durability:", summary(load, killed_at, failover_s, lost))
    print(refusal_figures(stack, load))
    refused = load.refused()
    print("first refusals:", [(round(at - killed_at, 2), u) for at, _, _, u in refused[:5]])
    assert {status for _, status, _, _ in refused} <= {503}, refused[:5]  # never a 500
    assert lost == []
    # The promoted replica has no replica of its own: strict refuses its partitions'
    # adds (nothing could be lost) while every other partition answers 202.
    late = [r for r in load.replies if r[0] > killed_at + failover_s + 3.0]
    assert late and all(
        (status == 202) != on_dead(stack, load, user) for _, status, _, user in late
    )
    await assert_completes(stack, load.accepted()[-1])
    await assert_dead_partitions_drain(stack, load)
