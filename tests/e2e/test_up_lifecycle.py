"""`errand up`'s edges: one per data dir, a busy port, a part that cannot start, orderly stops."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from errand.server.embedded import free_port
from support.processes import (
    ErrandProcess,
    errand_env,
    proc_info,
    processes,
    wait_log,
    wait_ready,
)
from support.waiting import wait_sync

ROOT = Path(__file__).resolve().parents[2]
BANNER_END = "Press Ctrl-C to stop."


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def processes_using(folder: Path) -> list[str]:
    """Live processes whose command line or environment names `folder` (Valkey's title
    hides its --dir, but every part of `errand up` inherits ERRAND_DATA_DIR)."""
    found = []
    for entry in Path("/proc").iterdir():
        info = proc_info(int(entry.name)) if entry.name.isdigit() else None
        if info is None or info.state == "Z" or info.pid == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(folder) in info.cmdline or str(folder) in environ:
            found.append(f"{info.pid}: {info.cmdline}")
    return found


def valkey_starts(data_dir: Path) -> int:
    """How many times a Valkey served this data dir (its log is appended to)."""
    log = data_dir / "valkey" / "valkey.log"
    return log.read_text().count("Ready to accept connections") if log.exists() else 0


def post_report(base: str, user_id: str) -> str:
    reply = httpx.post(f"{base}/reports", json={"userId": user_id, "reportType": "activity"})
    assert reply.status_code == 202, reply.text
    return str(reply.json()["jobId"])


def job_status(base: str, job_id: str, wait_s: int = 0) -> str:
    params = {"wait": wait_s} if wait_s else {}
    reply = httpx.get(f"{base}/jobs/{job_id}", params=params, timeout=wait_s + 10)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["status"])


def exits_within(proc: ErrandProcess, timeout_s: float) -> tuple[int, float]:
    """The exit code, and how long it took to exit."""
    start = time.monotonic()
    code = proc.wait(timeout_s)
    return code, time.monotonic() - start


def test_second_up_on_a_data_dir_refuses_and_the_first_keeps_working(tmp_path: Path) -> None:
    env = errand_env(data_dir=tmp_path / "data")
    with processes(tmp_path) as procs:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        first = procs.up(port, env)
        wait_log(first, BANNER_END)

        second = procs.up(free_port(), env)
        code, took_s = exits_within(second, timeout_s=15)
        assert code != 0 and took_s < 5, (code, took_s, second.log())
        assert f"another errand up (pid {first.pid})" in second.log(), second.log()
        assert valkey_starts(tmp_path / "data") == 1

        wait_ready(base, first)
        job_id = post_report(base, "u-lock")
        assert job_status(base, job_id, wait_s=20) == "completed"
        assert BANNER_END not in second.log()
        assert first.terminate(timeout_s=60) == 0


def test_busy_api_port_ends_up_naming_the_address_and_starts_nothing(
    tmp_path: Path, busy_port: int
) -> None:
    data_dir = tmp_path / "data"
    with processes(tmp_path) as procs:
        up = procs.up(busy_port, errand_env(data_dir=data_dir))
        code, _ = exits_within(up, timeout_s=20)
        out = up.log()
        assert code == 1, out
        assert f"cannot listen on 127.0.0.1:{busy_port}" in out, out
        assert BANNER_END not in out
        assert not (data_dir / "valkey").exists(), "Valkey was started"
        assert processes_using(tmp_path) == []


def test_a_worker_that_cannot_start_ends_up_with_its_reason(tmp_path: Path, busy_port: int) -> None:
    data_dir = tmp_path / "data"
    env = errand_env(data_dir=data_dir, worker_metrics_port=busy_port)
    with processes(tmp_path) as procs:
        up = procs.up(free_port(), env)
        code, _ = exits_within(up, timeout_s=40)
        out = up.log()
        assert code == 1, out
        assert "worker-1 could not start" in out, out
        assert f"cannot serve worker metrics on 127.0.0.1:{busy_port}" in out, out
        assert "restarting worker-1" not in out
        assert valkey_starts(data_dir) == 1
        assert processes_using(tmp_path) == []


def test_ctrl_c_hands_the_running_report_back_before_valkey_stops(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    # A stalled job would wait for its 30 s lock: only a hand-back makes it run again at once.
    slow = {
        "data_dir": data_dir,
        "shutdown_grace_seconds": 0.5,
        "lock_duration_ms": 30000,
        "stalled_interval_ms": 30000,
    }
    with processes(tmp_path) as procs:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        up = procs.up(port, errand_env(**slow, report_seconds=30))
        wait_log(up, BANNER_END)
        job_id = post_report(base, "u-ctrl-c")
        wait_sync(
            lambda: job_status(base, job_id),
            lambda s: s == "active",
            timeout_s=10,
            what="the report running",
        )
        procs.remember_tree(up)

        os.killpg(up.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        assert up.wait(30) == 0, up.log()[-4000:]
        assert "job handed back to wait" in up.log()
        assert procs.leftovers() == []

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        again = procs.up(port, errand_env(**slow, report_seconds=0.3))
        wait_ready(base, again)
        assert job_status(base, job_id, wait_s=10) == "completed"
        assert again.terminate(timeout_s=30) == 0


def test_run_py_passes_sigterm_on_to_errand_up(tmp_path: Path) -> None:
    env = errand_env(data_dir=tmp_path / "data")
    with processes(tmp_path) as procs:
        port = free_port()
        wrapper = procs.run(
            "run.py",
            [sys.executable, str(ROOT / "run.py"), "up", "--port", str(port)],
            env,
            cwd=ROOT,
        )
        wait_log(wrapper, BANNER_END, timeout_s=120)  # run.py may first refresh .venv
        below = procs.remember_tree(wrapper)
        assert any(" up --port " in info.cmdline for info in below), below

        wrapper.send(signal.SIGTERM)  # to run.py alone, not to its process group
        assert wrapper.wait(30) == 0, wrapper.log()[-4000:]
        assert "errand: stopped" in wrapper.log()
        assert procs.leftovers() == []
