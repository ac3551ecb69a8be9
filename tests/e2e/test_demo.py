"""`errand demo` as a user runs it after install: a subprocess that must exit 0 and clean up."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

DEMO_TIMEOUT_S = 120


def run_demo(*args: str, timeout_s: float = DEMO_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERRAND_")}
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "errand", "demo", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_demo_runs_every_step_and_stops_what_it_started() -> None:
    done = run_demo()
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "all 8 steps behaved as expected" in output, output
    api = re.search(r"errand API on http://127\.0\.0\.1:(\d+)", output)
    stopped = re.search(r"stopped errand \(pid (\d+)", output)
    assert api and stopped, output
    assert not listening(int(api.group(1))), "the demo's errand still listens"
    assert not Path(f"/proc/{stopped.group(1)}").exists(), "the demo's errand still runs"


def test_demo_against_an_unreachable_errand_fails() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = run_demo(
        "--url",
        f"http://127.0.0.1:{port}",
        "--admin-token",
        "t",
        "--webhook-secret",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        timeout_s=60,
    )
    assert done.returncode != 0, done.stdout + done.stderr
    assert "steps did not behave as expected" in done.stdout, done.stdout
