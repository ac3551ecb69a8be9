"""Partitions: the stable choice of a job's partition, ids that name it, slots that spread."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from errand.engine.gate import STREAK, SlotGate
from errand.jobids import QueueName, new_job_id, partition_for, partition_of, queue_of
from errand.keys import CLUSTER_SLOTS, Keys, key_slot, partition_prefix
from errand.settings import Settings
from errand.webhooks.events import EventType, delivery_job_id


def test_partition_choice_is_stable_across_processes() -> None:
    """CRC32, not Python's salted `hash`: another interpreter picks the same partitions."""
    here = [partition_for("client-a", f"u-{n}", 16) for n in range(50)]
    code = (
        "from errand.jobids import partition_for;"
        "print([partition_for('client-a', f'u-{n}', 16) for n in range(50)])"
    )
    there = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    ).stdout.strip()
    assert str(here) == there
    assert partition_for("client-a", "u-1", 16) == 6  # pinned: changing it strands jobs
    assert len(set(here)) > 8  # and it spreads


def test_one_partition_keeps_the_single_slot_layout() -> None:
    keys = Keys("{errand}", 1)
    job_id = new_job_id(QueueName.NOTIFICATIONS)
    assert partition_for("c", "u", 1) == 0
    assert len(job_id) == 4 + 32 and partition_of(job_id) == 0
    assert keys.job(QueueName.NOTIFICATIONS, job_id) == f"{{errand}}:notifications:{job_id}"
    assert keys.idempotency("c", "reports", "k") == "{errand}:x:idem:c:reports:k"
    assert keys.job_index_seq("c") == "{errand}:x:list:c:seq"
    assert keys.sent_ledger(job_id) == f"{{errand}}:x:sent:{job_id}"


@pytest.mark.parametrize("queue", list(QueueName))
@pytest.mark.parametrize("partition", [0, 1, 15, 1023])
def test_a_job_id_names_its_queue_and_partition(queue: QueueName, partition: int) -> None:
    job_id = new_job_id(queue, partition)
    assert queue_of(job_id) is queue
    assert partition_of(job_id) == partition


@pytest.mark.parametrize(
    "bad",
    [
        "ntf_01_" + "a" * 32,  # leading zero: two spellings of one partition
        "ntf_1024_" + "a" * 32,
        "ntf_0_" + "a" * 32,  # partition 0 has no number
        "ntf_x_" + "a" * 32,
        "ntf_1_2_" + "a" * 32,
        "ntf_" + "a" * 31,
        "xyz_" + "a" * 32,
        "ntf_\u0661_" + "a" * 32,  # a non-ASCII digit
    ],
)
def test_ids_errand_never_issued_are_refused(bad: str) -> None:
    assert queue_of(bad) is None
    assert partition_of(bad) == 0


def test_per_job_keys_live_in_the_jobs_partition_slot() -> None:
    keys = Keys("{errand}", 16)
    job_id = new_job_id(QueueName.REPORTS, 5)
    slot = key_slot(keys.queue(QueueName.REPORTS, "wait", 5))
    for key in (
        keys.job(QueueName.REPORTS, job_id),
        keys.cancel_request(job_id),
        keys.sent_ledger(job_id),
        keys.send_claim(job_id),
        keys.webhook_state(job_id),
        keys.report_result("c", job_id),
        keys.outbox(5),
    ):
        assert key_slot(key) == slot, key
    assert slot != key_slot(keys.queue(QueueName.REPORTS, "wait", 0))


def test_a_clients_keys_share_one_slot_of_their_own() -> None:
    keys = Keys("{errand}", 16)
    slot = key_slot(keys.job_index_seq("acme"))
    for key in (
        keys.idempotency("acme", "reports", "k"),
        keys.job_index("acme", QueueName.NOTIFICATIONS),
        keys.job_index_by("acme", QueueName.REPORTS, "user", "u"),
    ):
        assert key_slot(key) == slot
    assert key_slot(keys.job_index_seq("other")) != slot
    assert "{errand:c:a%7Bb%7D}" in keys.job_index_seq("a{b}")


@pytest.mark.parametrize("prefix", ["{errand}", "{t0123456789}", "app{x}y"])
@pytest.mark.parametrize(("partitions", "masters"), [(16, 3), (16, 2), (12, 3), (30, 10)])
def test_partitions_spread_evenly_over_masters(prefix: str, partitions: int, masters: int) -> None:
    """With the usual equal slot ranges per master, each master gets its share +- 1."""
    per_master = [0] * masters
    for p in range(partitions):
        per_master[key_slot(partition_prefix(prefix, p)) * masters // CLUSTER_SLOTS] += 1
    share = partitions / masters
    assert all(abs(n - share) <= 1.5 for n in per_master), per_master


def test_webhook_deliveries_go_to_their_source_jobs_partition() -> None:
    source = new_job_id(QueueName.NOTIFICATIONS, 9)
    delivery = delivery_job_id(source, EventType.NOTIFICATION_SENT, 1)
    assert queue_of(delivery) is QueueName.WEBHOOKS and partition_of(delivery) == 9


def test_worker_partitions_parse_ranges() -> None:
    assert Settings(partitions=16, worker_partitions="0-3, 8").worker_partition_list() == [
        0,
        1,
        2,
        3,
        8,
    ]
    assert Settings(partitions=4).worker_partition_list() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="not within 0-3"):
        Settings(partitions=4, worker_partitions="2-4").worker_partition_list()


async def test_the_gate_serves_waiters_in_order_and_asks_long_streaks_to_yield() -> None:
    gate = SlotGate(1)
    await gate.acquire()
    assert not gate.should_yield(STREAK)  # nobody waits
    order: list[str] = []

    async def take(name: str) -> None:
        await gate.acquire()
        order.append(name)

    waiters = [asyncio.create_task(take(n)) for n in ("a", "b")]
    await asyncio.sleep(0)
    assert gate.should_yield(STREAK) and not gate.should_yield(STREAK - 1)
    gate.release()
    await asyncio.sleep(0)
    gate.release()
    await asyncio.gather(*waiters)
    assert order == ["a", "b"]
