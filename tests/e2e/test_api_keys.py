"""API keys across the processes of `errand up`: the `default` client it makes and keeps,
and a revoked key refused by every API process within 2 s."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from errand.secrets_store import load
from errand.server.embedded import free_port
from support.processes import errand_env, processes, wait_log, wait_ready

API_PROCESSES = 2
# Each request on a fresh connection: the kernel hands them to both API processes.
FRESH = httpx.Limits(max_keepalive_connections=0)


def _statuses(base: str, headers: dict[str, str], n: int) -> list[int]:
    with httpx.Client(base_url=base, timeout=10, limits=FRESH) as http:
        return [http.get(f"/jobs/rep_{'0' * 32}", headers=headers).status_code for _ in range(n)]


def _secret(data_dir: Path, env: dict[str, str], which: str = "--api-key") -> str:
    shown = subprocess.run(
        [sys.executable, "-m", "errand", "secrets", which, "--data-dir", str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return shown.stdout.strip()


def test_default_client_and_revocation_across_api_processes(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = errand_env(data_dir=data_dir, auth="keys", admin_token=None)
    with processes(tmp_path) as procs:
        up = procs.up(port, env, "--api-workers", str(API_PROCESSES))
        banner = wait_log(up, "Press Ctrl-C to stop.")
        wait_ready(base, up)
        key = _secret(data_dir, env)
        stored = load(data_dir)
        assert stored is not None and stored.api_key == key and key.startswith("ek_")
        assert _secret(data_dir, env, "--admin-token") == stored.admin_token
        assert stat.S_IMODE((data_dir / "secrets.json").stat().st_mode) == 0o600
        assert key not in banner
        api_processes = [p for p in procs.remember_tree(up) if "errand api" in p.cmdline]
        assert api_processes, "no API process"
        mine = {"Authorization": f"Bearer {key}"}
        admin = {"Authorization": f"Bearer {stored.admin_token}"}
        with httpx.Client(base_url=base, timeout=30) as http:
            posted = http.post("/reports", json={"userId": "u-k", "reportType": "a"}, headers=mine)
            assert posted.status_code == 202, posted.text
            assert (
                http.post("/reports", json={"userId": "u-k", "reportType": "a"}).status_code == 401
            )
            made = http.post("/admin/clients", json={"name": "rotating"}, headers=admin).json()
        theirs = {"Authorization": f"Bearer {made['apiKey']}"}
        assert set(_statuses(base, theirs, 20)) == {404}  # known to (and cached by) both

        revoke = f"/admin/clients/{made['clientId']}/keys/{made['keyId']}"
        assert httpx.delete(f"{base}{revoke}", headers=admin).status_code == 204
        revoked_at = time.monotonic()
        while time.monotonic() - revoked_at < 2.0:  # the contract's deadline, then every
            time.sleep(0.1)  # process must refuse it
        after = _statuses(base, theirs, 30)
        assert set(after) == {401}, after
        assert set(_statuses(base, mine, 10)) == {404}  # the default key still works
        assert key not in up.log() and made["apiKey"] not in up.log()

    # A later start reuses the key it kept.
    with processes(tmp_path) as procs:
        up = procs.up(port, env)
        wait_ready(base, up)
        assert _secret(data_dir, env) == key
        assert set(_statuses(base, mine, 3)) == {404}
