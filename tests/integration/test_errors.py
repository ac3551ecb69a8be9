"""Bad input: problem documents, never a 500, and nothing created."""

from __future__ import annotations

from typing import Any

import pytest

from support.stack import Stack


@pytest.fixture
async def stack(stack: Stack) -> Stack:
    """No worker: every job a request creates stays countable in its queue."""
    await stack.stop_workers()
    return stack


async def queued_jobs(stack: Stack) -> int:
    total, keys = 0, stack.keys
    for queue in ("reports", "notifications"):
        for p in range(keys.partitions):
            total += await stack.redis.llen(keys.queue(queue, "wait", p))
            total += await stack.redis.zcard(keys.queue(queue, "prioritized", p))
    return total


def assert_problem(reply: Any, status: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    body = reply.json()
    assert body["status"] == status
    for field in ("type", "title", "detail"):
        assert isinstance(body[field], str) and body[field]
    return body


@pytest.mark.parametrize("route", ["/reports", "/notifications"])
@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"not json",
        b"[1, 2]",
        b'"text"',
        b"42",
        b"null",
        b"\xff\xfe{}",
        b'{"userId": "\xed\xa0\x80"}',
    ],
)
async def test_malformed_body_is_400(stack: Stack, route: str, raw: bytes) -> None:
    reply = await stack.http.post(route, content=raw, headers={"content-type": "application/json"})
    assert_problem(reply, 400)
    assert await queued_jobs(stack) == 0


@pytest.mark.parametrize("route", ["/reports", "/notifications"])
async def test_body_over_64_kib_is_413_and_at_the_limit_is_accepted(
    stack: Stack, route: str
) -> None:
    base = {"userId": "u-1", "reportType": "activity", "type": "welcome", "pad": ""}
    import orjson

    overhead = len(orjson.dumps(base))
    exact = dict(base, pad="x" * (65536 - overhead))
    assert len(orjson.dumps(exact)) == 65536
    ok = await stack.http.post(
        route, content=orjson.dumps(exact), headers={"content-type": "application/json"}
    )
    assert ok.status_code == 202, ok.text
    over = dict(base, pad="x" * (65537 - overhead))
    reply = await stack.http.post(
        route, content=orjson.dumps(over), headers={"content-type": "application/json"}
    )
    assert_problem(reply, 413)
    assert await queued_jobs(stack) == 1


async def test_chunked_body_over_limit_is_413(stack: Stack) -> None:
    async def chunks() -> Any:
        yield b'{"userId": "u", "reportType": "x", "pad": "'
        for _ in range(70):
            yield b"y" * 1024
        yield b'"}'

    reply = await stack.http.post(
        "/reports", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(reply, 413)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"userId", "reportType"}),
        ({"userId": "", "reportType": "activity"}, {"userId"}),
        ({"userId": "x" * 129, "reportType": "activity"}, {"userId"}),
        ({"userId": True, "reportType": "activity"}, {"userId"}),
        ({"userId": 1.5, "reportType": "activity"}, {"userId"}),
        ({"userId": ["a"], "reportType": "activity"}, {"userId"}),
        ({"userId": "u", "reportType": ""}, {"reportType"}),
        ({"userId": "u", "reportType": "has space"}, {"reportType"}),
        ({"userId": "u", "reportType": "x" * 65}, {"reportType"}),
        ({"userId": "u", "reportType": 5}, {"reportType"}),
        ({"userId": None, "reportType": "activity"}, {"userId"}),
        ({"userId": "u", "reportType": "a", "webhookUrl": "ftp://example.com/x"}, {"webhookUrl"}),
        ({"userId": "u", "reportType": "a", "webhookUrl": ""}, {"webhookUrl"}),
        (
            {"userId": "u", "reportType": "a", "webhookUrl": "https://e.com/" + "a" * 2040},
            {"webhookUrl"},
        ),
    ],
)
async def test_report_rule_violations_are_422_per_field(
    stack: Stack, body: dict[str, Any], fields: set[str]
) -> None:
    problem = assert_problem(await stack.http.post("/reports", json=body), 422)
    assert {e["field"] for e in problem["errors"]} == fields
    assert all(e["message"] for e in problem["errors"])
    assert await queued_jobs(stack) == 0


async def test_user_id_of_128_chars_and_null_webhook_are_accepted(stack: Stack) -> None:
    reply = await stack.http.post(
        "/reports", json={"userId": "u" * 128, "reportType": "a.b-c_d", "webhookUrl": None}
    )
    assert reply.status_code == 202, reply.text


async def test_unknown_notification_type_names_the_allowed_types(stack: Stack) -> None:
    problem = assert_problem(
        await stack.http.post("/notifications", json={"type": "sms", "userId": "u"}), 422
    )
    [error] = problem["errors"]
    assert error["field"] == "type"
    for allowed in ("welcome", "password-reset", "order-confirmed"):
        assert allowed in error["message"]


@pytest.mark.parametrize("wait", ["0", "-1", "61", "abc", "1e9"])
async def test_bad_wait_is_422(stack: Stack, wait: str) -> None:
    reply = await stack.http.get(f"/jobs/rep_{'0' * 32}?wait={wait}")
    assert_problem(reply, 422)


async def test_unknown_route_and_method_are_problems(stack: Stack) -> None:
    assert_problem(await stack.http.get("/nowhere"), 404)
    assert_problem(await stack.http.delete("/reports"), 405)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/schedules", "GET, POST"),
        ("PATCH", "/schedules/sch_x", "DELETE, GET"),
        ("PUT", "/admin/clients", "GET, POST"),
        ("POST", "/admin/clients/cl_x", "DELETE, GET"),
        ("DELETE", "/reports", "POST"),
        ("OPTIONS", "/notifications/batch", "POST"),
    ],
)
async def test_a_405_allows_every_method_of_the_path(
    stack: Stack, method: str, path: str, allow: str
) -> None:
    # A path served by two routes (one per method) names both.
    reply = await stack.http.request(method, path, headers=stack.admin)
    assert_problem(reply, 405)
    assert reply.headers["allow"] == allow
