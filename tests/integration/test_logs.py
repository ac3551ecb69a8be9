"""Structured logs: one JSON object per line, job fields on every job line, no secret ever.

The API and a worker run as real subprocesses with ERRAND_LOG_FORMAT=json and known
secrets; the test drives completions, retries, dead-letters, webhook deliveries and
bad admin auth through them, then reads every byte they wrote.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from errand.logs import JobContextFilter, JsonFormatter, job_context, redact
from errand.secrets_store import load
from errand.server.embedded import free_port
from support.processes import ErrandProcess, errand_env, processes, wait_log
from support.stack import Stack
from support.waiting import wait_for
from support.webhook_receiver import serve_receiver

JOB_ID = re.compile(r"\b(?:rep|ntf|whk)_[0-9a-f]{32}\b")


@contextlib.asynccontextmanager
async def webhook_receiver() -> AsyncIterator[str]:
    """A local endpoint that accepts every POST (the shared test receiver)."""
    async with serve_receiver() as receiver:
        yield receiver.url("/hook")


def known_secrets() -> dict[str, str]:
    def whsec() -> str:
        return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()

    return {
        "admin_token": "adm-" + secrets.token_hex(16),
        "webhook_secret": whsec(),
        "webhook_secret_previous": whsec(),
        "smtp_password": "smtp-" + secrets.token_hex(12),
    }


def forbidden_substrings(values: dict[str, str]) -> list[str]:
    """Every secret, and the key part of each webhook secret on its own."""
    found = list(values.values())
    found += [v.removeprefix("whsec_") for v in values.values() if v.startswith("whsec_")]
    return found


def json_lines(proc: ErrandProcess) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(proc.log().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise AssertionError(f"{proc.name} line {number} is not JSON: {line!r}") from err
        assert isinstance(record, dict), line
        assert {"ts", "level", "logger", "msg"} <= record.keys(), line
        records.append(record)
    return records


async def drive(http: httpx.AsyncClient, hook: str, admin: str) -> dict[str, list[str]]:
    """Completions, retries, dead-letters, webhooks and bad admin auth; the job ids made."""
    closed_hook = f"http://127.0.0.1:{free_port()}/hook"
    jobs: dict[str, list[str]] = {"reports": [], "notifications": []}
    for user, url in (("u-log-1", hook), ("u-log-2", closed_hook)):
        reply = await http.post(
            "/reports", json={"userId": user, "reportType": "activity", "webhookUrl": url}
        )
        assert reply.status_code == 202, reply.text
        jobs["reports"].append(reply.json()["jobId"])
    reply = await http.post(
        "/notifications", json={"type": "password-reset", "userId": "u-log", "webhookUrl": hook}
    )
    assert reply.status_code == 202, reply.text
    jobs["notifications"].append(reply.json()["jobId"])

    wrong = {"Authorization": "Bearer not-" + admin[4:]}
    assert (await http.get("/admin/dlq", headers=wrong)).status_code == 403
    assert (await http.get("/admin/dlq")).status_code == 401
    assert (await http.get("/admin/queues", headers={"Authorization": admin})).status_code == 401
    bearer = {"Authorization": f"Bearer {admin}"}
    assert (
        await http.post("/reports", json={"userId": "", "reportType": "x"}, headers=bearer)
    ).status_code == 422

    async def dead(job_id: str) -> bool:
        return bool((await http.get(f"/jobs/{job_id}")).json()["deadLettered"])

    async def done(job_id: str) -> bool:
        return (await http.get(f"/jobs/{job_id}")).json()["status"] == "completed"

    for job_id in jobs["reports"]:
        await wait_for(lambda j=job_id: done(j), timeout_s=30, what=f"{job_id} completed")
    note = jobs["notifications"][0]
    await wait_for(lambda: dead(note), timeout_s=30, what="the notification dead-lettered")
    assert (await http.post(f"/admin/dlq/{note}/retry", headers=bearer)).status_code == 202
    await wait_for(lambda: dead(note), timeout_s=30, what="dead-lettered again")

    async def webhooks_settled() -> bool:
        page = (await http.get("/admin/dlq", params={"queue": "webhooks"}, headers=bearer)).json()
        return bool(page["total"] >= 1)

    await wait_for(webhooks_settled, timeout_s=30, what="the failing webhook dead-lettered")
    return jobs


async def test_json_logs_carry_job_fields_and_never_a_secret(stack: Stack, tmp_path: Path) -> None:
    await stack.stop_workers()
    values = known_secrets()
    smtp_port = free_port()  # nothing listens: every send fails, then dead-letters
    env = errand_env(
        redis_url=stack.settings.redis_url,
        queue_prefix=stack.settings.queue_prefix,
        # DEBUG: completion lines too, and every library's chatter, all checked for secrets.
        log_format="json",
        log_level="DEBUG",
        admin_token=values["admin_token"],
        webhook_secret=values["webhook_secret"],
        webhook_secret_previous=values["webhook_secret_previous"],
        email_transport="smtp",
        smtp_url=f"smtp://errand:{values['smtp_password']}@127.0.0.1:{smtp_port}",
        notify_retries=1,
        webhook_retries=1,
    )
    port = free_port()
    async with (
        webhook_receiver() as hook,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
    ):
        with processes(tmp_path) as procs:
            api = procs.api(port, env)
            worker = procs.worker(env)

            async def ready() -> int | None:
                assert api.alive and worker.alive, api.log()[-2000:] + worker.log()[-2000:]
                with contextlib.suppress(httpx.TransportError):
                    return (await http.get("/readyz")).status_code
                return None

            await wait_for(ready, lambda s: s == 200, timeout_s=30, what="API ready")
            jobs = await drive(http, hook, values["admin_token"])
            assert api.terminate() in (0, -15) and worker.terminate() == 0
            outputs = {p.name: p.log() for p in (api, worker)}
            records = {p.name: json_lines(p) for p in (api, worker)}

    for name, text in outputs.items():
        for secret in forbidden_substrings(values):
            assert secret not in text, f"a secret reached the {name} output"

    lines = records["worker"]
    for record in lines + records["api"]:
        if "jobId" in record or JOB_ID.search(record["msg"]):
            assert {"jobId", "queue", "attempt"} <= record.keys(), record

    def about(job_id: str, text: str) -> list[dict[str, Any]]:
        return [r for r in lines if r.get("jobId") == job_id and text in r["msg"]]

    for job_id in jobs["reports"]:
        [completed] = about(job_id, "job completed")
        assert completed["queue"] == "reports" and completed["attempt"] == 1
    note = jobs["notifications"][0]
    retried = about(note, "job attempt failed, will retry")
    dead = about(note, "dead-lettered")
    assert [r["attempt"] for r in retried] == [1, 1], "one retry per round, two rounds"
    assert [r["attempt"] for r in dead] == [2, 2]
    assert all(r["level"] == "warning" and r["queue"] == "notifications" for r in dead)
    assert any("smtp" in r["msg"] for r in dead)
    deliveries = [r for r in lines if r.get("queue") == "webhooks" and "job completed" in r["msg"]]
    assert deliveries, "the delivered webhooks are logged as webhooks jobs"


def test_a_line_logged_while_a_job_runs_gets_the_job_fields() -> None:
    record = logging.LogRecord("errand.any", logging.INFO, __file__, 1, "sending %s", ("x",), None)
    token = job_context.set({"jobId": "ntf_" + "a" * 32, "queue": "notifications", "attempt": 2})
    try:
        assert JobContextFilter().filter(record)
    finally:
        job_context.reset(token)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["jobId"] == "ntf_" + "a" * 32
    assert entry["queue"] == "notifications" and entry["attempt"] == 2

    outside = logging.LogRecord("errand.any", logging.INFO, __file__, 1, "idle", (), None)
    assert JobContextFilter().filter(outside)
    assert "jobId" not in json.loads(JsonFormatter().format(outside))


def test_secret_shapes_are_masked_in_messages() -> None:
    text = (
        "Authorization: Bearer abc.def-123 whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw "
        "smtp://user:pa55word@mail:25 redis://:hunter2@cache:6379/0"
    )
    masked = redact(text)
    for secret in ("abc.def-123", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "pa55word", "hunter2"):
        assert secret not in masked
    assert "smtp://user:***@mail:25" in masked and "redis://:***@cache:6379/0" in masked


async def test_errand_up_at_debug_never_prints_a_secret(tmp_path: Path) -> None:
    """`errand up` with generated secrets (admin token, webhook secret, the embedded Valkey's
    password) and a configured SMTP password: its banner and every DEBUG line of every
    part are read for them, after requests that make the parts talk about Redis and SMTP."""
    smtp_password = "smtp-" + secrets.token_hex(12)
    env = errand_env(
        data_dir=tmp_path / "data",
        admin_token=None,
        webhook_secret=None,
        log_level="DEBUG",
        email_transport="smtp",
        smtp_url=f"smtp://errand:{smtp_password}@127.0.0.1:{free_port()}",
        notify_retries=0,
    )
    port = free_port()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        with processes(tmp_path) as procs:
            up = procs.up(port, env)
            await asyncio.to_thread(wait_log, up, "Press Ctrl-C to stop.")
            stored = load(tmp_path / "data")
            assert stored is not None and stored.redis_password
            bearer = {"Authorization": f"Bearer {stored.admin_token}"}
            posted = await http.post("/notifications", json={"type": "welcome", "userId": "u"})
            assert posted.status_code == 202, posted.text
            status_url = posted.headers["location"]
            failed = await http.get(status_url, params={"wait": 30})
            assert failed.json()["status"] == "failed", failed.text
            assert (await http.get("/admin/queues", headers=bearer)).status_code == 200
            assert (
                await http.get("/admin/dlq", headers={"Authorization": "Bearer x"})
            ).status_code == 403
            assert up.terminate() == 0
            output = up.log()
    assert "redis://:***@127.0.0.1:" in output  # the banner shows where, not the password
    assert " DEBUG " in output  # DEBUG lines were written, and read
    for secret in (
        stored.admin_token,
        stored.webhook_secret,
        stored.webhook_secret.removeprefix("whsec_"),
        stored.redis_password,
        smtp_password,
    ):
        assert secret not in output, "a secret reached the output of errand up"
