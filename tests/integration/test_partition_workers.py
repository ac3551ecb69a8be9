"""Workers over partitions: fair between a hot partition and a cold one, and pinnable."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from errand.engine.runner import WorkerProcess
from errand.jobids import QueueName, partition_for, partition_of
from errand.queue.facade import JobQueues
from errand.queue.producers import NewNotification, enqueue_notifications
from support.stack import Stack
from support.waiting import wait_for

NOTIFY = QueueName.NOTIFICATIONS
CLIENT = "anonymous"


def users_in(partition: int, partitions: int) -> Iterator[str]:
    """User ids whose notifications land in `partition`."""
    n = 0
    while True:
        user = f"u-{n}"
        if partition_for(CLIENT, user, partitions) == partition:
            yield user
        n += 1


async def enqueue(queues: JobQueues, users: list[str]) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(users), 500):
        notes = [NewNotification("welcome", u) for u in users[start : start + 500]]
        ids += await enqueue_notifications(queues, CLIENT, notes)
    return ids


async def completed(queues: JobQueues, partition: int) -> int:
    return (await queues.partition_counts(NOTIFY))[partition]["completed"]


@pytest.mark.settings(partitions=4, email_send_ms=2, worker_engine="fast")
async def test_a_cold_partition_is_served_while_a_hot_one_drains(stack: Stack) -> None:
    await stack.stop_workers()
    queues = stack.app.state.services.queues
    hot_user = next(users_in(0, 4))
    hot = await enqueue(queues, [hot_user] * 2000)
    cold_users = users_in(2, 4)
    await stack.start_worker([NOTIFY], concurrency=4)
    await wait_for(lambda: completed(queues, 0), lambda n: n >= 100, what="the hot drain")
    cold = await enqueue(queues, [next(cold_users) for _ in range(10)])
    assert {partition_of(j) for j in hot} == {0} and {partition_of(j) for j in cold} == {2}
    await wait_for(lambda: completed(queues, 2), lambda n: n == 10, timeout_s=30, what="cold")
    hot_done = await completed(queues, 0)
    assert hot_done < 1000, f"the cold jobs waited for {hot_done} of 2,000 hot ones"
    await wait_for(
        lambda: completed(queues, 0), lambda n: n == 2000, timeout_s=120, what="hot drained"
    )


@pytest.mark.parametrize("engine", ["fast", "bullmq"])
@pytest.mark.settings(partitions=3, email_send_ms=0)
async def test_a_pinned_worker_never_takes_another_partitions_job(
    stack: Stack, engine: str
) -> None:
    await stack.stop_workers()
    queues = stack.app.state.services.queues
    per_partition = {p: await enqueue(queues, [next(users_in(p, 3))] * 20) for p in range(3)}
    pinned = stack.settings.model_copy(update={"worker_partitions": "0-1", "worker_engine": engine})
    worker = WorkerProcess(pinned, [NOTIFY])
    await worker.start()
    stack.workers.append(worker)
    for p in (0, 1):
        await wait_for(lambda p=p: completed(queues, p), lambda n: n == 20, what=f"partition {p}")
    counts = (await queues.partition_counts(NOTIFY))[2]
    assert counts["completed"] == counts["active"] == 0
    assert counts["waiting"] + counts["prioritized"] == 20
    statuses = {(await queues.snapshot(j)).status for j in per_partition[2]}
    assert statuses == {"waiting"}
    await stack.start_worker([NOTIFY])  # an unpinned worker takes the rest
    await wait_for(lambda: completed(queues, 2), lambda n: n == 20, what="partition 2")
