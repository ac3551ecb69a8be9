"""The Node reference (Express + Node BullMQ, the v1 contract): a scratch copy, `npm ci`, its API.

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

# It is not part of this repository: by default it sits beside the checkout, in the
# `shared/reference-node` folder of the project's workspace; ERRAND_BENCH_REFERENCE overrides.
_BESIDE = Path(__file__).resolve().parents[2] / "shared" / "reference-node"
SOURCE = Path(os.environ.get("ERRAND_BENCH_REFERENCE", str(_BESIDE)))
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
    sources = b"".join(p.read_bytes() for p in sorted(SOURCE.glob("*.js")))
    want = hashlib.sha256(lock + sources).hexdigest()
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


def start_api(directory: Path, redis_url: str, processes: int) -> Service:
    """The reference API on `processes` processes behind one port (its cluster.js, as
    errand runs one API process per core), so the comparison is like for like."""
    port = free_port()
    env = errand_env(
        redis_url,
        "bull",
        REDIS_URL=redis_url,
        PORT=str(port),
        ERRAND_EMAIL_SEND_MS="0",
        ERRAND_ADMIN_TOKEN="bench",
        REF_API_PROCESSES=str(processes),
    )
    log = scratch_dir("reference") / "api.log"
    entry = "cluster.js" if (directory / "cluster.js").exists() else "server.js"
    proc = spawn(["node", entry, "api"], env, log, cwd=directory)
    wait_http(f"http://127.0.0.1:{port}/readyz", 30)
    return Service("reference api", proc, port, log)
