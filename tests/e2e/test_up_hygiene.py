"""`errand up`'s safe defaults: a password on the embedded Valkey, its memory cap, and
private webhook targets allowed only while the API listens on loopback."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import httpx
import pytest
import redis

from errand.secrets_store import load
from errand.server.embedded import free_port
from errand.server.supervisor import Supervisor, UpOptions
from errand.settings import Settings
from support.processes import errand_env, processes, wait_log, wait_ready

EMBEDDED_PORT = re.compile(r"redis +redis://:\*\*\*@127\.0\.0\.1:(\d+)/0")


def raw_ping(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(200)


def test_up_on_loopback_guards_its_valkey_and_allows_private_webhooks(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = errand_env(data_dir=data_dir, webhook_allow_private=None, embedded_maxmemory="64mb")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with processes(tmp_path) as procs:
        up = procs.up(port, env)
        banner = wait_log(up, "Press Ctrl-C to stop.")
        wait_ready(base, up)
        assert "private webhook URLs are allowed" in banner
        found = EMBEDDED_PORT.search(banner)
        assert found is not None, banner
        valkey_port = int(found.group(1))
        stored = load(data_dir)
        assert stored is not None and len(stored.redis_password) >= 32

        assert raw_ping(valkey_port).startswith(b"-NOAUTH"), "a client without the password"
        with redis.Redis(port=valkey_port, password=stored.redis_password) as client:
            assert client.ping()
            assert client.config_get("maxmemory") == {"maxmemory": str(64 * 1024 * 1024)}
            assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        commands = " | ".join(info.cmdline for info in procs.remember_tree(up))
        assert "valkey-server" in commands and stored.redis_password not in commands

        with httpx.Client(base_url=base, timeout=30) as http:
            local = {"userId": "u-up", "reportType": "a", "webhookUrl": "http://127.0.0.1:9/h"}
            assert http.post("/reports", json=local).status_code == 202
            for url in ("http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/"):
                reply = http.post("/reports", json={**local, "webhookUrl": url})
                assert reply.status_code == 422, reply.text
        assert up.terminate() == 0


def test_up_on_all_interfaces_refuses_private_webhooks_unless_asked(tmp_path: Path) -> None:
    env = errand_env(data_dir=tmp_path / "data", webhook_allow_private=None)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with processes(tmp_path) as procs:
        up = procs.up(port, env, "--host", "0.0.0.0")
        banner = wait_log(up, "Press Ctrl-C to stop.")
        wait_ready(base, up)
        assert "private webhook URLs are refused" in banner
        with httpx.Client(base_url=base, timeout=30) as http:
            body = {"userId": "u-up", "reportType": "a", "webhookUrl": "http://127.0.0.1:9/h"}
            reply = http.post("/reports", json=body)
            assert reply.status_code == 422, reply.text
            assert reply.json()["errors"][0]["field"] == "webhookUrl"
        assert up.terminate() == 0


@pytest.mark.parametrize(
    ("host", "explicit", "allowed"),
    [
        ("127.0.0.1", None, "true"),
        ("localhost", None, "true"),
        ("::1", None, "true"),
        ("127.0.0.2", None, "true"),
        ("0.0.0.0", None, "false"),
        ("::", None, "false"),
        ("192.168.1.5", None, "false"),
        ("errand.example.com", None, "false"),
        ("0.0.0.0", "true", "true"),
        ("127.0.0.1", "false", "false"),
    ],
)
def test_up_allows_private_webhooks_by_default_only_on_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str, explicit: str | None, allowed: str
) -> None:
    monkeypatch.delenv("ERRAND_WEBHOOK_ALLOW_PRIVATE", raising=False)
    if explicit is not None:
        monkeypatch.setenv("ERRAND_WEBHOOK_ALLOW_PRIVATE", explicit)
    supervisor = Supervisor(Settings(data_dir=tmp_path), UpOptions(host=host))
    env = supervisor._child_env("redis://127.0.0.1:1/0")
    assert env["ERRAND_WEBHOOK_ALLOW_PRIVATE"] == allowed
