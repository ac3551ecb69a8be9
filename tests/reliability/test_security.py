"""Security review checks against real `errand api` and `errand worker` processes:
request-head and body limits, the admin token, and no secret in any answer or log line.
(The threat model these checks serve is docs/security.md.)"""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from errand.server.embedded import EmbeddedValkey, free_port
from support.processes import ErrandProcess, Processes, errand_env, rss_bytes, wait_log, wait_ready

REDIS_PASSWORD = "r3dis-Pa55-do-not-leak"
ADMIN_TOKEN = "adm-T0ken-do-not-leak"
WEBHOOK_SECRET = "whsec_c2VjcmV0LWRvLW5vdC1sZWFrLTEyMzQ1Njc4"
SMTP_PASSWORD = "smtp-Pa55-do-not-leak"
SECRETS = (
    REDIS_PASSWORD,
    ADMIN_TOKEN,
    WEBHOOK_SECRET,
    SMTP_PASSWORD,
    WEBHOOK_SECRET.removeprefix("whsec_"),
)


class PasswordValkey(EmbeddedValkey):
    """The embedded server with `requirepass`: readiness needs AUTH before PING."""

    def ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(f"AUTH {REDIS_PASSWORD}\r\nPING\r\n".encode())
                reply = b""
                while reply.count(b"\r\n") < 2:
                    chunk = sock.recv(64)
                    if not chunk:
                        return False
                    reply += chunk
                return reply.endswith(b"+PONG\r\n")
        except OSError:
            return False


class Deployment:
    def __init__(self, base: str, api: ErrandProcess, worker: ErrandProcess) -> None:
        self.base, self.api, self.worker = base, api, worker


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """API and worker on a password-protected Valkey, every secret set, JSON DEBUG logs."""
    tmp = tmp_path_factory.mktemp("security")
    server = PasswordValkey(tmp / "valkey", extra_args=["--requirepass", REDIS_PASSWORD])
    server.start()
    procs = Processes(tmp)
    try:
        env = errand_env(
            redis_url=f"redis://:{REDIS_PASSWORD}@127.0.0.1:{server.port}/0",
            admin_token=ADMIN_TOKEN,
            webhook_secret=WEBHOOK_SECRET,
            email_transport="smtp",
            smtp_url=f"smtp://mailer:{SMTP_PASSWORD}@127.0.0.1:{free_port()}",
            notify_retries=0,
            log_format="json",
            log_level="DEBUG",
        )
        port = free_port()
        api = procs.api(port, env, "--workers", "1")  # one process: its pid is the server
        worker = procs.worker(env)
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, api)
        wait_log(worker, " started on ", timeout_s=30)
        yield Deployment(base, api, worker)
    finally:
        procs.stop_all()
        server.stop()


def raw_request(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(OSError):  # the server may close before reading it all
            sock.sendall(head)
        data = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                data += chunk
    return data


def test_request_heads_over_16_kib_get_431_and_cost_no_memory(deployment: Deployment) -> None:
    port = int(deployment.base.rsplit(":", 1)[1])
    ok = raw_request(
        port,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: "
        + b"a" * 8000
        + b"\r\nConnection: close\r\n\r\n",
    )
    assert ok.startswith(b"HTTP/1.1 200"), ok[:100]
    for head in (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 20_000 + b"\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(3000)) + b"\r\n",
        b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        reply = raw_request(port, head)
        assert reply.startswith(b"HTTP/1.1 431"), reply[:100]
        assert b"application/problem+json" in reply
    before = rss_bytes(deployment.api.pid)
    raw_request(port, b"GET /healthz HTTP/1.1\r\nX-Huge: " + b"a" * 50_000_000 + b"\r\n\r\n")
    assert rss_bytes(deployment.api.pid) - before < 16 * 1024 * 1024
    assert httpx.get(f"{deployment.base}/healthz").status_code == 200


def test_bodies_over_64_kib_get_413_declared_or_streamed(deployment: Deployment) -> None:
    limit = 65_536
    padding = '{"type": "welcome", "userId": "u-1", "pad": "%s"}'
    exact = (padding % ("x" * (limit - len(padding % "")))).encode()
    assert len(exact) == limit
    with httpx.Client(base_url=deployment.base) as http:
        post = functools.partial(http.post, headers={"content-type": "application/json"})
        assert post("/notifications", content=exact).status_code == 202  # 64 KiB is fine
        assert post("/notifications", content=exact + b" ").status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
            for _ in range(100):
                yield b" " * 10_000

        assert post("/reports", content=chunks()).status_code == 413


def test_admin_routes_need_the_exact_token(deployment: Deployment) -> None:
    with httpx.Client(base_url=deployment.base) as http:
        assert http.get("/admin/queues").status_code == 401
        for wrong in (
            "Bearer nope",
            f"Bearer {ADMIN_TOKEN}x",
            f"Bearer {ADMIN_TOKEN[:-1]}",
            f"Basic {ADMIN_TOKEN}",
        ):
            assert http.get("/admin/queues", headers={"Authorization": wrong}).status_code in (
                401,
                403,
            )
        good = http.get("/admin/queues", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert good.status_code == 200


def every_get_route(http: httpx.Client, job_ids: list[str]) -> list[httpx.Response]:
    """GET every path of the OpenAPI document (ids filled in), plus /docs and the schema."""
    spec = http.get("/openapi.json").json()
    replies = [http.get("/openapi.json"), http.get("/docs"), http.get("/admin/ui")]
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for path, methods in spec["paths"].items():
        if "get" not in methods or path.endswith("/events"):
            continue
        for job_id in job_ids if "{job_id}" in path else [""]:
            url = path.replace("{job_id}", job_id)
            replies.append(http.get(url, headers=admin))
            replies.append(http.get(url))
    return replies


def test_no_secret_in_any_answer_or_log_line(deployment: Deployment) -> None:
    replies: list[httpx.Response] = []
    with httpx.Client(base_url=deployment.base, timeout=30) as http:
        note = http.post(
            "/notifications",
            json={
                "type": "password-reset",
                "userId": "u-sec",
                "webhookUrl": f"http://127.0.0.1:{free_port()}/hook",
            },
        )
        report = http.post("/reports", json={"userId": "u-sec", "reportType": "activity"})
        replies += [note, report]
        ids = [note.json()["jobId"], report.json()["jobId"]]
        for job_id in ids:
            replies.append(http.get(f"/jobs/{job_id}", params={"wait": 20}))
        failed = http.get(f"/notifications/{ids[0]}").json()
        assert failed["status"] == "failed" and failed["error"].startswith("smtp: ")
        replies += [
            http.get("/admin/dlq", headers={"Authorization": "Bearer wrong"}),
            http.get("/admin/dlq", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}),
            http.post(
                "/reports", content=b"{not json", headers={"content-type": "application/json"}
            ),
            http.post("/notifications", json={"type": "nope", "userId": ""}),
        ]
        replies += every_get_route(http, ids)
    assert len(replies) > 20
    texts = [f"{r.status_code} {r.headers} {r.text}" for r in replies]
    logs = deployment.api.log() + deployment.worker.log()
    assert "smtp: " in logs  # the failure was logged, so the log was worth reading
    leaks = [(s, where) for s in SECRETS for where, text in _sources(texts, logs) if s in text]
    assert leaks == [], leaks


def _sources(texts: list[str], logs: str) -> list[tuple[str, Any]]:
    return [*(("response", t) for t in texts), ("logs", logs)]


def test_data_dir_and_secrets_file_are_private(tmp_path: Path) -> None:
    from errand.secrets_store import load_or_create

    load_or_create(tmp_path / "data")
    assert ((tmp_path / "data" / "secrets.json").stat().st_mode & 0o777) == 0o600
