"""The OpenAPI document is a contract: schemathesis, as a user runs it, finds nothing.

The schemathesis CLI runs against a live stack (API over real HTTP, a real worker)
with every check (`--checks all`: no 5xx, status codes, content types, response
schemas and headers, negative data rejected, positive data accepted, auth enforced,
use after free, ...) in every phase (examples, coverage, fuzzing, stateful), and
any finding or warning fails the test. The `{job_id}` routes get real ids (a
completed report and notification, dead-lettered notifications) from a
schemathesis dictionary, so they are not only answered with 404; the admin routes
get the admin token, and the client routes an API key when the stack has one.

The default run is bounded for CI; the `slow` one runs the issue's 200 examples.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from support.stack import ClientKeyAuth, Stack

EXAMPLES = int(os.environ.get("ERRAND_FUZZ_EXAMPLES", "15"))
SLOW_EXAMPLES = 200
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
ID_PROBABILITY = 0.8  # the rest are generated ids: the 404 path stays tested too


@dataclass
class FuzzRun:
    exit_code: int
    report: dict[str, Any]
    output: str
    duration_s: float

    def summary(self) -> str:
        cases = self.report.get("test_cases", {})
        return (
            f"[schemathesis] {cases.get('generated')} test cases in {self.duration_s:.0f} s, "
            f"operations {self.report.get('operations')}, "
            f"failures {self.report.get('failures')}, errors {self.report.get('errors')}"
        )


async def final_job(stack: Stack, path: str, body: dict[str, Any]) -> str:
    """The id of a job posted to `path`, once it is final."""
    posted = await stack.http.post(path, json=body)
    assert posted.status_code == 202, posted.text
    job_id: str = posted.json()["jobId"]
    view = await stack.http.get(f"/jobs/{job_id}", params={"wait": 30})
    assert view.json()["status"] in ("completed", "failed"), view.text
    return job_id


async def dead_letters(stack: Stack, count: int) -> list[str]:
    body = {"type": "welcome", "userId": "fail-seed"}  # fails every attempt
    return list(
        await asyncio.gather(*(final_job(stack, "/notifications", body) for _ in range(count)))
    )


async def made(stack: Stack, path: str, body: dict[str, Any] | None, id_field: str) -> str:
    """The id a POST to `path` made (201/202)."""
    headers = stack.admin if path.startswith("/admin/") else None
    reply = await stack.http.post(path, json=body, headers=headers)
    assert reply.status_code in (201, 202), reply.text
    value: str = reply.json()[id_field]
    return value


async def seed_ids(stack: Stack) -> dict[str, list[str]]:
    """Real ids for every `{...}` route, in dictionaries named after what uses them.

    What a request uses up gets ids of its own: dead letters to retry and to delete
    (a retry takes a job out of the DLQ while it runs again), scheduled notifications
    to cancel, schedules and clients to delete, the keys of one client to revoke."""
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    later = {"type": "welcome", "userId": "fuzz-seed", "sendAt": tomorrow.isoformat()}
    report, sent, failed = await asyncio.gather(
        final_job(stack, "/reports", {"userId": "fuzz-seed", "reportType": "weekly"}),
        final_job(stack, "/notifications", {"type": "welcome", "userId": "fuzz-seed"}),
        dead_letters(stack, 12),
    )
    every = {"every": 3600, "job": {"queue": "reports", "userId": 7, "reportType": "weekly"}}
    schedules = [await made(stack, "/schedules", every, "scheduleId") for _ in range(3)]
    clients = [await made(stack, "/admin/clients", {"name": "fuzz"}, "clientId") for _ in range(2)]
    scheduled = await made(stack, "/notifications", later, "jobId")
    key_path = f"/admin/clients/{clients[0]}/keys"
    # What a request uses up (a cancel, a delete, a revoke) also gets `fresh-...`: the
    # hooks' before_call makes a new id for each such request (schemathesis_hooks.FRESH_*).
    return {
        "jobs": [report, sent, *failed[:4]],
        "retried": failed[4:8],
        "deadLetters": failed[8:],
        "scheduled": [scheduled, "fresh-job"],
        "schedules": schedules[:2],
        "deletedSchedules": [schedules[2], "fresh-schedule"],
        "clients": clients[:1],
        "keys": [await made(stack, key_path, None, "keyId"), "fresh-key"],
        "deletedClients": [clients[1], "fresh-client"],
    }


# (method, path, {parameter: dictionary}): the dictionaries of each operation's ids;
# every other `{job_id}` takes `jobs`.
OPERATION_IDS = [
    ("POST", "/admin/dlq/{job_id}/retry", {"job_id": "retried"}),
    ("DELETE", "/admin/dlq/{job_id}", {"job_id": "deadLetters"}),
    ("POST", "/jobs/{job_id}/cancel", {"job_id": "scheduled"}),
    ("GET", "/schedules/{schedule_id}", {"schedule_id": "schedules"}),
    ("DELETE", "/schedules/{schedule_id}", {"schedule_id": "deletedSchedules"}),
    ("GET", "/admin/clients/{client_id}", {"client_id": "clients"}),
    ("POST", "/admin/clients/{client_id}/keys", {"client_id": "clients"}),
    ("DELETE", "/admin/clients/{client_id}", {"client_id": "deletedClients"}),
    (
        "DELETE",
        "/admin/clients/{client_id}/keys/{key_id}",
        {"client_id": "clients", "key_id": "keys"},
    ),
]


def _parameter(dictionary: str) -> str:
    return f"{{ dictionary = {json.dumps(dictionary)}, probability = {ID_PROBABILITY} }}"


def config_toml(
    stack: Stack, api_key: str, ids: dict[str, list[str]], examples: int, seed: int
) -> str:
    """schemathesis.toml: all checks, any warning fails, real ids, the stack's credentials."""
    token = stack.settings.admin_token
    assert token is not None
    lines = [
        f"base-url = {json.dumps(stack.base_url)}",
        f"seed = {seed}",
        "max-stream-events = 1",  # an SSE answer is checked on its first event
        # A long-poll (?wait=N) may hold its answer up to 60 s.
        "request-timeout = 75",
        "warnings = { fail-on = true }",
        "[checks]",
        "max_response_time = 65",
        "[generation]",
        f"max-examples = {examples}",
        "database = 'none'",
        "[auth.openapi.adminToken]",
        f"bearer = {json.dumps(token.get_secret_value())}",
        "[auth.openapi.apiKey]",
        f"bearer = {json.dumps(api_key)}",
    ]
    for name, values in ids.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(values)}"]
    lines += ["[parameters]", f'"path.job_id" = {_parameter("jobs")}']
    for method, path, parameters in OPERATION_IDS:
        chosen = ", ".join(f'"path.{name}" = {_parameter(d)}' for name, d in parameters.items())
        lines += [
            "[[operations]]",
            f"include-path = {json.dumps(path)}",
            f"include-method = {json.dumps(method)}",
            f"parameters = {{ {chosen} }}",
        ]
    return "\n".join(lines) + "\n"


async def run_schemathesis(stack: Stack, tmp: Path, examples: int, seed: int) -> FuzzRun:
    """`schemathesis run <stack>/openapi.json` with the config above, as a client with a
    rate limit (so its answers carry the RateLimit headers); its JSON report."""
    fuzzer = await stack.new_client("fuzzer", rateLimit={"perSecond": 1000, "burst": 1000})
    stack.http.auth = ClientKeyAuth(fuzzer.api_key)  # the seeded jobs are the fuzzer's
    ids = await seed_ids(stack)
    config = tmp / "schemathesis.toml"
    config.write_text(config_toml(stack, fuzzer.api_key, ids, examples, seed))
    report = tmp / "report.json"
    token = stack.settings.admin_token
    assert token is not None
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": HOOKS.stem,
        "PYTHONPATH": str(HOOKS.parent),
        # for the hooks' before_call, which makes the `fresh-...` ids
        "ERRAND_FUZZ_BASE_URL": stack.base_url,
        "ERRAND_FUZZ_API_KEY": fuzzer.api_key,
        "ERRAND_FUZZ_ADMIN_TOKEN": token.get_secret_value(),
    }
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{stack.base_url}/openapi.json",
        "--checks",
        "all",
        # Replaced by the hooks' variants, which also accept the answers no schema can
        # state (a host that does not resolve, a batch's refused items, ...).
        "--exclude-checks",
        "positive_data_acceptance,negative_data_rejection",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        cwd=tmp,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    duration_s = time.monotonic() - started
    data = json.loads(report.read_text()) if report.exists() else {}
    return FuzzRun(proc.returncode or 0, data, out.decode(errors="replace"), duration_s)


def assert_clean(run: FuzzRun) -> None:
    print("\n" + run.summary())
    assert run.report, f"schemathesis wrote no report:\n{run.output[-6000:]}"
    assert run.exit_code == 0, run.output[-12000:]
    assert run.report["failures"] == [] and run.report["errors"] == [], run.output[-12000:]
    tested = run.report["operations"]
    assert tested["tested"] == tested["total"] >= 29, tested
    # The real ids reached past the 404: every operation with an id was accepted or, for an
    # id used up (a job canceled once answers 409 after), refused as a conflict.
    for label, rates in run.report["valid_rates"].items():
        if "{" in label:
            reached = sum(
                phase.get("accepted", 0) + phase.get("conflicts", 0) for phase in rates.values()
            )
            assert reached > 0, (label, rates)


@pytest.mark.timeout(240)
async def test_schemathesis_finds_nothing(stack: Stack, tmp_path: Path) -> None:
    run = await run_schemathesis(stack, tmp_path, EXAMPLES, seed=1)
    assert_clean(run)


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_schemathesis_finds_nothing_in_200_examples(stack: Stack, tmp_path: Path) -> None:
    seed = int(os.environ.get("ERRAND_FUZZ_SEED", str(int(time.time()))))
    run = await run_schemathesis(stack, tmp_path, SLOW_EXAMPLES, seed=seed)
    print(f"[schemathesis] seed {seed}")
    assert_clean(run)
