"""The Node reference (/work/shared/reference-node): a scratch copy, `npm ci`, its API process.

The copy lives under /tmp and is reused while its package-lock.json is unchanged;
none of its code ever enters this repository.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from harness import Service, errand_env, free_port, scratch_dir, spawn, wait_http

SOURCE = Path(os.environ.get("ERRAND_BENCH_REFERENCE", "/work/shared/reference-node"))
COPY = Path("/tmp/errand-bench-reference")


def prepare() -> Path | None:
    """The installed scratch copy, or None (with the reason printed) when it cannot be had."""
    if not (SOURCE / "server.js").exists():
        print(f"[bench] no reference at {SOURCE}: skipping it")
        return None
    if shutil.which("npm") is None or shutil.which("node") is None:
        print("[bench] node/npm not found: skipping the reference")
        return None
    lock = (SOURCE / "package-lock.json").read_bytes()
    stamp = COPY / ".bench-stamp"
    want = hashlib.sha256(lock + (SOURCE / "server.js").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == want and (COPY / "node_modules").exists():
        return COPY
    shutil.rmtree(COPY, ignore_errors=True)
    shutil.copytree(SOURCE, COPY, ignore=shutil.ignore_patterns("node_modules"))
    print("[bench] npm ci for the reference (first run only)", flush=True)
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--silent"],
        cwd=COPY,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        print(f"[bench] npm ci failed, skipping the reference:\n{done.stderr[-1500:]}")
        return None
    stamp.write_text(want)
    return COPY


def start_api(directory: Path, redis_url: str) -> Service:
    port = free_port()
    env = errand_env(
        redis_url,
        "bull",
        REDIS_URL=redis_url,
        PORT=str(port),
        ERRAND_EMAIL_SEND_MS="0",
        ERRAND_ADMIN_TOKEN="bench",
    )
    log = scratch_dir("reference") / "api.log"
    proc = spawn(["node", "server.js", "api"], env, log, cwd=directory)
    wait_http(f"http://127.0.0.1:{port}/readyz", 30)
    return Service("reference api", proc, port, log)
