"""errand's queues are plain BullMQ queues: Node's BullMQ and bull-board read and work them.

tests/node/interop.js runs against the same Valkey and the test's key prefixes: each
partition of an errand queue is an ordinary BullMQ queue under its partition's prefix.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from errand.jobids import QueueName, partition_of
from support.stack import Stack
from support.waiting import wait_for

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


async def node(stack: Stack, mode: str, *args: str, timeout_s: float = 60) -> dict[str, Any]:
    """Run interop.js and return the JSON object it prints."""
    assert NODE is not None
    if not (NODE_DIR / "node_modules" / "bullmq").is_dir():
        pytest.fail("tests/node/node_modules is missing: run `npm ci` in tests/node (run.py does)")
    settings = stack.settings
    assert settings.redis_url is not None
    proc = await asyncio.create_subprocess_exec(
        NODE,
        str(NODE_DIR / "interop.js"),
        mode,
        settings.redis_url,
        ",".join(stack.keys.partition_prefix(p) for p in range(settings.partitions)),
        *args,
        cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    lines = out.decode().strip().splitlines()
    assert proc.returncode == 0 and lines, f"interop.js {mode} failed: {out!r} {err!r}"
    return dict(json.loads(lines[-1]))


async def post(stack: Stack, path: str, body: dict[str, Any]) -> str:
    reply = await stack.http.post(path, json=body)
    assert reply.status_code == 202, reply.text
    return str(reply.json()["jobId"])


async def admin(stack: Stack, path: str) -> dict[str, Any]:
    reply = await stack.http.get(path, headers=stack.admin)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def errand_counts(body: dict[str, Any]) -> dict[str, dict[str, int]]:
    keys = ("waiting", "active", "delayed", "completed", "deadLettered")
    return {q["name"]: {k: q[k] for k in keys} for q in body["queues"]}


def as_errand(counts: dict[str, int]) -> dict[str, int]:
    """BullMQ's per-state counts folded the way errand reports them."""
    return {
        "waiting": counts["waiting"] + counts.get("prioritized", 0) + counts.get("paused", 0),
        "active": counts["active"],
        "delayed": counts["delayed"],
        "completed": counts["completed"],
        "deadLettered": counts["failed"],
    }


async def seed(stack: Stack) -> dict[str, str]:
    """One completed report, one dead-lettered notification, then (no worker) waiting jobs."""
    done = await post(stack, "/reports", {"userId": "u-node-done", "reportType": "activity"})
    dead = await post(stack, "/notifications", {"type": "welcome", "userId": "fail-node"})

    async def status(job_id: str) -> str:
        return str((await stack.http.get(f"/jobs/{job_id}")).json()["status"])

    await wait_for(lambda: status(done), lambda s: s == "completed", what="report completed")
    await wait_for(lambda: status(dead), lambda s: s == "failed", what="notification failed")
    await stack.stop_workers()
    waiting = await post(stack, "/reports", {"userId": "u-node-wait", "reportType": "billing"})
    urgent = await post(stack, "/notifications", {"type": "password-reset", "userId": "u-node"})
    return {"done": done, "dead": dead, "waiting": waiting, "urgent": urgent}


@pytest.mark.settings(notify_retries=0)
async def test_node_bullmq_reads_errands_counts_and_jobs(stack: Stack) -> None:
    jobs = await seed(stack)
    seen = await node(stack, "read", *jobs.values())
    ours = errand_counts(await admin(stack, "/admin/queues"))
    assert {name: as_errand(c) for name, c in seen["counts"].items()} == ours
    assert ours["reports"] == {
        "waiting": 1,
        "active": 0,
        "delayed": 0,
        "completed": 1,
        "deadLettered": 0,
    }
    assert seen["counts"]["notifications"]["prioritized"] == 1

    for key, job_id in jobs.items():
        detail = await admin(stack, f"/admin/jobs/{job_id}")
        theirs = seen["jobs"][job_id]
        assert theirs["queue"] == detail["queue"], key
        assert theirs["name"] == detail["name"], key
        assert theirs["data"] == detail["data"], key
        assert theirs["attemptsMade"] == detail["attemptsMade"], key
        assert theirs["priority"] == detail["priority"], key
    assert seen["jobs"][jobs["dead"]]["state"] == "failed"
    assert seen["jobs"][jobs["dead"]]["failedReason"] == "simulated: 554 mailbox unavailable"
    assert seen["jobs"][jobs["done"]]["state"] == "completed"
    assert seen["jobs"][jobs["waiting"]]["state"] == "waiting"
    assert seen["jobs"][jobs["urgent"]]["state"] == "prioritized"


async def test_a_node_worker_processes_a_job_errand_enqueued(stack: Stack) -> None:
    await stack.stop_workers()
    job_id = await post(stack, "/reports", {"userId": "u-node-work", "reportType": "activity"})
    done = await node(stack, "work", str(QueueName.REPORTS))
    assert done["jobId"] == job_id
    assert stack.client is not None  # Node tools see the owner too
    owner = stack.client.client_id
    assert done["data"] == {"clientId": owner, "userId": "u-node-work", "reportType": "activity"}
    assert done["result"]["processedBy"] == "node-bullmq"

    view = (await stack.http.get(f"/jobs/{job_id}")).json()
    assert view["status"] == "completed"
    assert view["attemptsMade"] == 1 and view["progress"] == 100
    assert view["startedAt"] is not None and view["finishedAt"] is not None


@pytest.mark.settings(notify_retries=0)
async def test_bull_board_lists_errands_queues_with_the_right_counts(stack: Stack) -> None:
    jobs = await seed(stack)
    dead_partition = partition_of(jobs["dead"])
    active = f"{dead_partition}:notifications" if dead_partition else "notifications"
    board = await node(stack, "board", active)
    assert board["status"] == 200
    by_name = {q["name"]: q for q in board["queues"]}
    assert len(by_name) == len(QueueName) * stack.settings.partitions
    totals: dict[str, dict[str, int]] = {}
    for name, queue in by_name.items():  # `p:notifications`: partition p of notifications
        total = totals.setdefault(name.rpartition(":")[2], {})
        for state, n in as_errand(queue["counts"]).items():
            total[state] = total.get(state, 0) + n
    assert totals == errand_counts(await admin(stack, "/admin/queues"))
    failed = by_name[active]["jobs"]
    assert [j["id"] for j in failed] == [jobs["dead"]]
    assert failed[0]["failedReason"] == "simulated: 554 mailbox unavailable"
    assert stack.client is not None
    owner = stack.client.client_id
    assert failed[0]["data"] == {"clientId": owner, "type": "welcome", "userId": "fail-node"}
