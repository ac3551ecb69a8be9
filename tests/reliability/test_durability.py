"""Durability of acknowledged jobs: kill -9 the embedded Valkey and every errand process
mid-run, start `errand up` again on the same data dir, and find every job that got a 202.

What each mode promises (docs/scaling.md, "Durability"):
- `normal` (AOF `appendfsync everysec`): a crash of the processes loses nothing that
  Valkey acknowledged, because every write reaches the kernel before the reply; an OS
  crash or power loss can lose the writes of the last second (two when the disk is slow).
- `strict` (AOF `appendfsync always`): Valkey fsyncs before it replies, so not even a
  power loss takes an acknowledged job.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from errand.keys import Keys
from errand.secrets_store import load
from errand.server.embedded import free_port
from errand.settings import Settings
from support.processes import Processes, errand_env, wait_log, wait_ready
from support.waiting import wait_sync


class Producer(threading.Thread):
    """Posts reports and notifications as fast as the API takes them; keeps the 202 ids."""

    def __init__(self, base_url: str) -> None:
        super().__init__(daemon=True)
        self.base_url = base_url
        self.acknowledged: list[str] = []
        self.refused = 0
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        with httpx.Client(base_url=self.base_url, timeout=5) as http:
            while not self.stop.is_set():
                n += 1
                route, body = (
                    ("/reports", {"userId": f"u-dur-{n}", "reportType": "activity"})
                    if n % 3 == 0
                    else ("/notifications", {"type": "welcome", "userId": f"u-dur-{n}"})
                )
                try:
                    reply = http.post(route, json=body)
                except httpx.HTTPError:
                    self.refused += 1
                    continue
                if reply.status_code == 202:
                    self.acknowledged.append(reply.json()["jobId"])
                else:
                    self.refused += 1


def kill_everything(procs: Processes, up: Any) -> None:
    """SIGKILL Valkey first, then `errand up` (before it can restart anything), then the
    API and worker processes, each by its pid."""
    tree = procs.remember_tree(up)
    valkeys = [p for p in tree if "valkey-server" in p.cmdline]
    assert len(valkeys) == 1, [p.cmdline for p in tree]
    os.kill(valkeys[0].pid, signal.SIGKILL)
    up.send(signal.SIGKILL)
    for info in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(info.pid, signal.SIGKILL)
    up.wait(10)
    wait_sync(procs.leftovers, lambda left: not left, timeout_s=10, what="every process gone")


def statuses(http: httpx.Client, ids: list[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for job_id in ids:
        reply = http.get(f"/jobs/{job_id}")
        ok = reply.status_code == 200
        counts[reply.json()["status"] if ok else f"http {reply.status_code}"] += 1
    return counts


@pytest.mark.parametrize("durability", ["normal", "strict"])
def test_acknowledged_jobs_survive_kill_9_of_valkey_and_errand(
    tmp_path: Path, procs: Processes, durability: str
) -> None:
    data_dir = tmp_path / "data"
    prefix = "{errand}"
    env = errand_env(
        data_dir=data_dir,
        durability=durability,
        queue_prefix=prefix,
        report_seconds=0.5,
        email_send_ms=50,
        notify_concurrency=4,
    )
    port = free_port()
    up = procs.up(port, env)
    banner = wait_log(up, "Press Ctrl-C to stop.")
    assert f"AOF {'always' if durability == 'strict' else 'everysec'}" in banner
    producer = Producer(f"http://127.0.0.1:{port}")
    producer.start()
    wait_sync(
        lambda: len(producer.acknowledged),
        lambda n: n >= 50,
        timeout_s=30,
        what="some acknowledged jobs",
    )
    kill_everything(procs, up)
    producer.stop.set()
    producer.join(10)
    acknowledged = list(producer.acknowledged)

    port = free_port()
    again = procs.up(port, env)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, again)
    with httpx.Client(base_url=base, timeout=10) as http:
        found = statuses(http, acknowledged)
        lost = sum(n for status, n in found.items() if status.startswith("http"))
        final = wait_sync(
            lambda: statuses(http, acknowledged),
            lambda c: c["completed"] == len(acknowledged),
            timeout_s=90,
            what="every acknowledged job completed after the restart",
        )
    outbox = redis.Redis.from_url(_redis_url(again, data_dir))
    try:
        keys = Keys(prefix, Settings().partitions)  # the partitions `errand up` ran with
        raw = [m for key in keys.outboxes() for m in outbox.lrange(key, 0, -1)]
        sent = Counter(orjson.loads(m)["messageId"] for m in raw)
    finally:
        outbox.close()
    duplicates = sum(1 for n in sent.values() if n > 1)
    print(
        f"\n[durability {durability}] acknowledged={len(acknowledged)} "
        f"refused_or_failed={producer.refused} lost={lost} after_restart={dict(found)} "
        f"final={dict(final)} duplicate_emails={duplicates}"
    )
    assert lost == 0, f"acknowledged jobs lost: {dict(found)}"
    assert duplicates == 0
    assert again.terminate(timeout_s=60) == 0


def _redis_url(up: Any, data_dir: Path) -> str:
    """The embedded server's URL: its port from the banner `errand up` prints (which hides
    the password), its password from the data dir's secrets file."""
    match = re.search(r"redis://:\*\*\*@127\.0\.0\.1:(\d+)/0", wait_log(up, "Press Ctrl-C"))
    assert match, up.log()
    stored = load(data_dir)
    assert stored is not None and stored.redis_password
    return f"redis://:{stored.redis_password}@127.0.0.1:{match.group(1)}/0"
