"""Jobs survive a restart: SIGTERM `errand up` with work waiting, start it again, all complete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from errand.server.embedded import free_port
from support.processes import errand_env, processes, wait_log, wait_ready
from support.waiting import wait_sync

REPORTS = 12
NOTIFICATIONS = 12


def post_jobs(http: httpx.Client) -> list[str]:
    ids = []
    for n in range(REPORTS):
        reply = http.post("/reports", json={"userId": f"u-restart-{n}", "reportType": "activity"})
        assert reply.status_code == 202, reply.text
        ids.append(reply.json()["jobId"])
    for n in range(NOTIFICATIONS):
        reply = http.post("/notifications", json={"type": "welcome", "userId": f"u-restart-{n}"})
        assert reply.status_code == 202, reply.text
        ids.append(reply.json()["jobId"])
    return ids


def statuses(http: httpx.Client, ids: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job_id in ids:
        reply = http.get(f"/jobs/{job_id}")
        assert reply.status_code == 200, reply.text
        status = reply.json()["status"]
        counts[status] = counts.get(status, 0) + 1
    return counts


def test_jobs_waiting_at_sigterm_complete_after_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    # Slow, narrow workers: the jobs are posted far faster than they drain.
    env = errand_env(
        data_dir=data_dir,
        report_seconds=1.0,
        report_concurrency=1,
        email_send_ms=400,
        notify_concurrency=1,
    )
    with processes(tmp_path) as procs:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        first = procs.up(port, env)
        wait_log(first, "Press Ctrl-C to stop.")
        with httpx.Client(base_url=base, timeout=30) as http:
            ids = post_jobs(http)
            before = statuses(http, ids)
        assert before.get("waiting", 0) >= (REPORTS + NOTIFICATIONS) // 2, before
        assert first.terminate(timeout_s=60) == 0, first.log()[-4000:]

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        second = procs.up(port, env)
        wait_ready(base, second)
        with httpx.Client(base_url=base, timeout=30) as http:
            after_restart = statuses(http, ids)
            assert sum(after_restart.values()) == len(ids), "a job vanished across the restart"

            def done() -> dict[str, Any]:
                return statuses(http, ids)

            final = wait_sync(
                done,
                lambda c: c.get("completed") == len(ids),
                timeout_s=60,
                what="every job completed after the restart",
            )
        assert final == {"completed": len(ids)}
        assert second.terminate(timeout_s=60) == 0
        assert procs.leftovers() == []
