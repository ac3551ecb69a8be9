"""ERRAND_DURABILITY=strict on a store with a replica: an add is acknowledged (202) only
once the replica has the job (`WAIT 1`); without a replica strict falls back and says so."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from errand.jobids import QueueName
from errand.server.embedded import EmbeddedValkey
from support.stack import run_stack
from support.stack import test_settings as settings_for
from support.waiting import wait_sync


@pytest.fixture
def primary_and_replica(tmp_path: Path) -> Iterator[tuple[EmbeddedValkey, EmbeddedValkey]]:
    primary = EmbeddedValkey(tmp_path / "primary")
    primary.start()
    replica = EmbeddedValkey(
        tmp_path / "replica", extra_args=["--replicaof", primary.host, str(primary.port)]
    )
    try:
        replica.start()

        def linked() -> str:
            with redis.Redis(host=replica.host, port=replica.port) as client:
                return str(client.info("replication").get("master_link_status"))

        wait_sync(linked, lambda s: s == "up", timeout_s=20, what="the replica's link")
        yield primary, replica
    finally:
        replica.stop()
        primary.stop()


async def test_a_strict_add_is_on_the_replica_when_the_api_answers(
    primary_and_replica: tuple[EmbeddedValkey, EmbeddedValkey],
) -> None:
    primary, replica = primary_and_replica
    settings = settings_for(primary.url, durability="strict", replica_wait_ms=1000)
    copy = aioredis.Redis(host=replica.host, port=replica.port, decode_responses=True)
    try:
        async with run_stack(settings, with_worker=False) as stack:
            for n in range(20):
                reply = await stack.http.post(
                    "/notifications", json={"type": "welcome", "userId": f"u-{n}"}
                )
                assert reply.status_code == 202, reply.text
                job_key = stack.keys.job(QueueName.NOTIFICATIONS, reply.json()["jobId"])
                # Read at once from the replica: WAIT made the API hold the 202 until here.
                assert await copy.exists(job_key) == 1, f"job {n} missing on the replica"

            replica.kill()  # no replica acknowledges now: the add is refused, not lost
            refused = await stack.http.post(
                "/notifications", json={"type": "welcome", "userId": "u-late"}
            )
            assert refused.status_code == 503, refused.text
            assert "replica" in refused.json()["detail"]
            assert refused.headers["retry-after"]
    finally:
        await copy.aclose()


async def test_strict_without_a_replica_adds_as_before_and_says_so(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    server = EmbeddedValkey(tmp_path / "alone")
    server.start()
    try:
        settings = settings_for(server.url, durability="strict")
        caplog.set_level(logging.WARNING, logger="errand.redis")
        async with run_stack(settings, with_worker=False) as stack:
            replies = await asyncio.gather(
                *(
                    stack.http.post("/notifications", json={"type": "welcome", "userId": f"a{n}"})
                    for n in range(3)
                )
            )
            assert [r.status_code for r in replies] == [202] * 3
        warnings = [r.getMessage() for r in caplog.records if r.name == "errand.redis"]
        assert any("no replica" in m for m in warnings), warnings
    finally:
        server.stop()
