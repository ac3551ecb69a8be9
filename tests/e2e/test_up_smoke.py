"""`errand up` as a user runs it: banner (no secrets in it), readiness, a report, clean SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx

from errand.secrets_store import load
from errand.server.embedded import free_port
from support.processes import errand_env, processes, wait_log, wait_ready
from support.waiting import wait_sync


def test_up_serves_a_report_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = errand_env(data_dir=data_dir, admin_token=None, webhook_secret=None)
    with processes(tmp_path) as procs:
        up = procs.up(port, env)
        banner = wait_log(up, "Press Ctrl-C to stop.")
        assert f"API              {base}" in banner
        assert f"docs             {base}/docs" in banner
        assert f"data             {data_dir.resolve()}" in banner
        assert "embedded Valkey, AOF everysec" in banner
        wait_ready(base, up)
        stored = load(data_dir)  # generated, since none is configured
        assert stored is not None
        assert stored.admin_token not in banner and stored.webhook_secret not in banner
        assert f"secrets          {data_dir.resolve() / 'secrets.json'}" in banner
        assert f"errand secrets --data-dir {data_dir.resolve()}" in banner
        shown = subprocess.run(
            [sys.executable, "-m", "errand", "secrets", "--data-dir", str(data_dir)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert f"admin token      {stored.admin_token}" in shown.stdout
        assert f"webhook secret   {stored.webhook_secret}" in shown.stdout

        tree = procs.remember_tree(up)
        commands = " | ".join(info.cmdline for info in tree)
        assert "valkey-server" in commands, commands
        assert "errand worker" in commands and "errand api" in commands, commands

        with httpx.Client(base_url=base, timeout=30) as http:
            posted = http.post("/reports", json={"userId": "u-smoke", "reportType": "activity"})
            assert posted.status_code == 202, posted.text
            job_id = posted.json()["jobId"]
            final = http.get(f"/jobs/{job_id}", params={"wait": 30}).json()
            assert final["status"] == "completed", final
            result = http.get(final["resultUrl"])
            assert result.status_code == 200 and result.json()["userId"] == "u-smoke"

        up.send(signal.SIGTERM)
        assert up.wait(60) == 0, up.log()[-4000:]
        assert "errand: stopped" in up.log()
        assert procs.leftovers() == [], "processes of the run outlived errand up"
        assert (data_dir / "valkey" / "appendonly").is_dir()


def test_up_workers_flag_runs_that_many_worker_processes(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = errand_env(data_dir=tmp_path / "data")
    with processes(tmp_path) as procs:
        up = procs.up(port, env, "--workers", "3", "--concurrency", "2")
        wait_log(up, "Press Ctrl-C to stop.")
        assert "workers          3 process(es)" in up.log()
        workers = [p for p in procs.remember_tree(up) if "errand worker" in p.cmdline]
        assert len(workers) == 3 and all("--concurrency 2" in w.cmdline for w in workers)
        admin = {"Authorization": f"Bearer {env['ERRAND_ADMIN_TOKEN']}"}
        with httpx.Client(base_url=base, timeout=30) as http:
            queues = wait_sync(
                lambda: http.get("/admin/queues", headers=admin).json(),
                lambda q: len(q["workers"]) == 3,
                timeout_s=30,
                what="three worker heartbeats",
            )
        assert {q["name"]: q["workers"] for q in queues["queues"]} == {
            "reports": 3,
            "notifications": 3,
            "webhooks": 3,
        }
        assert up.terminate(timeout_s=60) == 0
        assert procs.leftovers() == []
