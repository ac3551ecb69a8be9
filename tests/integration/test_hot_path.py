"""The hot path (errand.api.hotpath) answers exactly as the FastAPI routes do.

The same request is sent twice: once as the hot path takes it, once in a form
that sends it through FastAPI (an Idempotency-Key on a POST, an ignored query
parameter or a `?wait=` long-poll on a GET). Status, problem documents, bodies
and the headers clients read must be the same.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from errand.api.hotpath import HotPath
from errand.queue.facade import JobQueues
from support.stack import Stack
from support.waiting import wait_for

COMPARED_HEADERS = (
    "content-type",
    "retry-after",
    "www-authenticate",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
)
_JOB_ID = re.compile(r"(rep|ntf)_([0-9]+_)?[0-9a-f]{32}")


@pytest.fixture
async def stack(stack: Stack) -> Stack:
    """No worker: a job stays where its POST put it."""
    await stack.stop_workers()
    return stack


def comparable(reply: httpx.Response) -> tuple[int, dict[str, str], Any]:
    """Status, the headers compared, and the body with job ids blanked out."""
    headers = {name: reply.headers.get(name, "") for name in COMPARED_HEADERS}
    if "location" in reply.headers:
        headers["location"] = _JOB_ID.sub("<id>", reply.headers["location"])
    return reply.status_code, headers, _JOB_ID.sub("<id>", reply.text)


def scope(method: str, path: str, query: bytes = b"", headers: Any = ()) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "headers": list(headers),
        "root_path": "",
    }


def test_only_the_hot_requests_match() -> None:
    assert HotPath.match(scope("POST", "/notifications")) == "/notifications"
    assert HotPath.match(scope("POST", "/reports")) == "/reports"
    assert HotPath.match(scope("GET", "/jobs/rep_1")) == "/jobs/{job_id}"
    assert HotPath.match(scope("GET", "/notifications/ntf_1")) == "/notifications/{job_id}"
    for miss in (
        scope("POST", "/reports", headers=[(b"idempotency-key", b"k")]),
        scope("GET", "/jobs/rep_1", query=b"wait=5"),
        scope("GET", "/jobs/rep_1/events"),
        scope("GET", "/jobs/"),
        scope("HEAD", "/jobs/rep_1"),
        scope("PUT", "/reports"),
        scope("POST", "/reports/"),
        scope("GET", "/notifications/ntf_1", query=b"x=1"),
        scope("GET", "/notifications/ntf_1", query=b"wait=5"),
        scope("GET", "/notifications/ntf_1/events"),
        scope("GET", "/notifications/"),
        scope("GET", "/notifications/ntf_1/more"),
        scope("GET", "/reports/rep_1/result"),
        dict(scope("GET", "/jobs/rep_1"), root_path="/errand"),
        {"type": "websocket", "path": "/jobs/rep_1"},
    ):
        assert HotPath.match(miss) is None, miss


@pytest.mark.parametrize(
    ("route", "raw"),
    [
        ("/notifications", b'{"type": "welcome", "userId": "u-1"}'),
        ("/notifications", b'{"type": "password-reset", "userId": 7}'),
        ("/reports", b'{"userId": "u-2", "reportType": "activity"}'),
        ("/notifications", b'{"type": "sms", "userId": "u"}'),
        ("/reports", b'{"userId": "", "reportType": "a b"}'),
        ("/reports", b'{"userId": "u", "reportType": "a", "webhookUrl": "ftp://x.example/"}'),
        ("/reports", b"not json"),
        ("/notifications", b"[1]"),
        ("/notifications", b""),
    ],
)
async def test_posts_answer_alike_on_both_paths(stack: Stack, route: str, raw: bytes) -> None:
    hot = await stack.http.post(route, content=raw, headers={"content-type": "application/json"})
    if hot.status_code == 202 and route == "/reports":  # the same report would be deduplicated
        raw = raw.replace(b"u-2", b"u-3")
    framework = await stack.http.post(
        route,
        content=raw,
        headers={"content-type": "application/json", "idempotency-key": "key-1"},
    )
    assert comparable(hot) == comparable(framework)
    assert hot.status_code in (202, 400, 422)


async def test_a_body_over_the_limit_is_413_on_both_paths(stack: Stack) -> None:
    raw = b'{"userId": "u", "reportType": "a", "pad": "' + b"x" * 70_000 + b'"}'
    json = {"content-type": "application/json"}
    hot = await stack.http.post("/reports", content=raw, headers=json)
    framework = await stack.http.post(
        "/reports", content=raw, headers={**json, "idempotency-key": "big"}
    )
    assert hot.status_code == 413
    assert comparable(hot) == comparable(framework)


# Two ways through FastAPI: an ignored parameter, and a long-poll (`?wait=`).
FRAMEWORK_QUERIES = ["via=framework", "wait=5"]


@pytest.mark.parametrize("query", FRAMEWORK_QUERIES)
@pytest.mark.parametrize("job_id", [f"rep_{'0' * 32}", f"ntf_{'f' * 32}", "nope", "rep_%20x"])
async def test_unknown_jobs_are_the_same_404_on_both_paths(
    stack: Stack, job_id: str, query: str
) -> None:
    hot = await stack.http.get(f"/jobs/{job_id}")
    framework = await stack.http.get(f"/jobs/{job_id}?{query}")
    assert hot.status_code == 404
    assert comparable(hot) == comparable(framework)


@pytest.mark.parametrize("query", FRAMEWORK_QUERIES)
@pytest.mark.parametrize("job_id", [f"ntf_{'0' * 32}", f"rep_{'0' * 32}", "nope"])
async def test_unknown_notifications_are_the_same_404_on_both_paths(
    stack: Stack, job_id: str, query: str
) -> None:
    hot = await stack.http.get(f"/notifications/{job_id}")
    framework = await stack.http.get(f"/notifications/{job_id}?{query}")
    assert hot.status_code == 404
    assert comparable(hot) == comparable(framework)


# A long-poll that times out (no worker) answers the job as it is: what the hot path answers.
@pytest.mark.parametrize("query", ["via=framework", "wait=0.1"])
async def test_a_notification_reads_the_same_on_both_paths(stack: Stack, query: str) -> None:
    posted = await stack.http.post("/notifications", json={"type": "welcome", "userId": "n"})
    status_url = posted.headers["location"]
    hot = await stack.http.get(status_url)
    framework = await stack.http.get(f"{status_url}?{query}")
    assert hot.json()["jobId"] == posted.json()["jobId"]
    assert hot.json()["status"] == "waiting"
    assert comparable(hot) == comparable(framework)


@pytest.mark.parametrize("query", ["via=framework", "wait=0.1"])
async def test_a_job_reads_the_same_on_both_paths(stack: Stack, query: str) -> None:
    posted = await stack.http.post("/reports", json={"userId": "same", "reportType": "activity"})
    job_id = posted.json()["jobId"]
    hot = await stack.http.get(f"/jobs/{job_id}")
    framework = await stack.http.get(f"/jobs/{job_id}?{query}")
    assert hot.json()["jobId"] == job_id
    assert hot.json()["status"] == "waiting"
    assert comparable(hot) == comparable(framework)
    assert hot.headers["retry-after"].isdigit()


# Each request as the hot path takes it, and the same request sent through FastAPI.
_BOTH_WAYS = [
    (("GET", f"/jobs/rep_{'a' * 32}", {}), ("GET", f"/jobs/rep_{'a' * 32}?via=framework", {})),
    (
        ("GET", f"/notifications/ntf_{'a' * 32}", {}),
        ("GET", f"/notifications/ntf_{'a' * 32}?via=framework", {}),
    ),
    (
        ("POST", "/notifications", {"json": {"type": "welcome", "userId": "u"}}),
        (
            "POST",
            "/notifications",
            {"json": {"type": "welcome", "userId": "u"}, "headers": {"idempotency-key": "k-n"}},
        ),
    ),
    (
        ("POST", "/reports", {"json": {"userId": "u", "reportType": "a"}}),
        (
            "POST",
            "/reports",
            {"json": {"userId": "u", "reportType": "a"}, "headers": {"idempotency-key": "k-r"}},
        ),
    ),
]
_SECRET = "redis://:hunter2@10.0.0.7:6379"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (RuntimeError(f"bug while talking to {_SECRET}"), 500),
        (RedisConnectionError(f"Error 111 connecting to {_SECRET}"), 503),
    ],
    ids=["unexpected-500", "redis-down-503"],
)
@pytest.mark.parametrize(("hot_request", "framework_request"), _BOTH_WAYS)
async def test_failures_are_the_same_problem_on_both_paths(
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    status: int,
    hot_request: tuple[str, str, dict[str, Any]],
    framework_request: tuple[str, str, dict[str, Any]],
) -> None:
    async def broken(*_: Any, **__: Any) -> Any:
        raise error

    monkeypatch.setattr(JobQueues, "snapshot", broken)
    monkeypatch.setattr(JobQueues, "add", broken)
    monkeypatch.setattr(JobQueues, "add_many", broken)
    method, url, options = hot_request
    hot = await stack.http.request(method, url, **options)
    method, url, options = framework_request
    framework = await stack.http.request(method, url, **options)
    assert hot.status_code == status
    assert hot.headers["content-type"] == "application/problem+json"
    assert "hunter2" not in hot.text and "10.0.0.7" not in hot.text
    assert comparable(hot) == comparable(framework)


async def test_hot_requests_are_counted_in_the_http_metrics(stack: Stack) -> None:
    def count(text: str, route: str, status: str, method: str) -> float:
        pattern = (
            rf'^errand_http_requests_total\{{method="{method}",route="{re.escape(route)}",'
            rf'status="{status}"\}} (\S+)$'
        )
        found = re.search(pattern, text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    before = (await stack.http.get("/metrics")).text
    await stack.http.post("/notifications", json={"type": "welcome", "userId": "m"})
    await stack.http.post("/reports", json={"userId": "m"})
    await stack.http.get(f"/jobs/rep_{'1' * 32}")

    async def counted() -> bool:
        after = (await stack.http.get("/metrics")).text
        expected = (
            ("/notifications", "202", "POST"),
            ("/reports", "422", "POST"),
            ("/jobs/{job_id}", "404", "GET"),
        )
        return all(count(after, *key) == count(before, *key) + 1 for key in expected)

    await wait_for(counted, timeout_s=5, what="hot requests in errand_http_requests_total")


def nested(levels: int) -> bytes:
    """A report body whose objects and arrays nest `levels` deep (the body itself is 1)."""
    inner = b"[" * (levels - 1) + b"]" * (levels - 1)
    return b'{"userId": "deep", "reportType": "activity", "pad": ' + inner + b"}"


@pytest.mark.parametrize(
    ("headers", "raw", "status"),
    [
        ({"content-type": "text/plain"}, b'{"userId": "u", "reportType": "a"}', 415),
        ({"content-type": "application/x-www-form-urlencoded"}, b"userId=u&reportType=a", 415),
        ({}, b'{"userId": "u", "reportType": "a"}', 415),
        ({"content-type": "application/json"}, nested(33), 400),
    ],
    ids=["text-plain", "form", "no-content-type", "33-levels-deep"],
)
@pytest.mark.parametrize("route", ["/reports", "/notifications"])
async def test_unsupported_and_deep_bodies_answer_alike_on_both_paths(
    stack: Stack, route: str, headers: dict[str, str], raw: bytes, status: int
) -> None:
    hot = await stack.http.post(route, content=raw, headers=headers)
    framework = await stack.http.post(
        route, content=raw, headers={**headers, "idempotency-key": "odd-body"}
    )
    assert hot.status_code == status, hot.text
    assert hot.headers["content-type"] == "application/problem+json"
    assert comparable(hot) == comparable(framework)


def _with_headers(request: tuple[str, str, dict[str, Any]], headers: dict[str, str]) -> Any:
    method, url, options = request
    return method, url, {**options, "headers": {**options.get("headers", {}), **headers}}


@pytest.mark.parametrize(
    "authorization",
    ["Bearer nope", f"Bearer ek_{'0' * 16}_{'A' * 32}", "Basic x", "Bearer test-admin-token"],
)
@pytest.mark.parametrize(("hot_request", "framework_request"), _BOTH_WAYS)
async def test_a_bad_key_is_the_same_401_on_both_paths(
    stack: Stack,
    authorization: str,
    hot_request: tuple[str, str, dict[str, Any]],
    framework_request: tuple[str, str, dict[str, Any]],
) -> None:
    bad = {"Authorization": authorization}
    method, url, options = _with_headers(hot_request, bad)
    hot = await stack.http.request(method, url, **options)
    method, url, options = _with_headers(framework_request, bad)
    framework = await stack.http.request(method, url, **options)
    assert hot.status_code == 401
    assert hot.headers["www-authenticate"].startswith("Bearer")
    assert comparable(hot) == comparable(framework)


@pytest.mark.parametrize("query", FRAMEWORK_QUERIES)
async def test_another_clients_job_is_the_same_404_on_both_paths(stack: Stack, query: str) -> None:
    other = await stack.new_client("other")
    for path, body in (
        ("/notifications", {"type": "welcome", "userId": "o"}),
        ("/reports", {"userId": "o", "reportType": "a"}),
    ):
        posted = await stack.http.post(path, json=body, headers=other.headers)
        status_url = posted.headers["location"]
        hot = await stack.http.get(status_url)
        framework = await stack.http.get(f"{status_url}?{query}")
        assert hot.status_code == 404
        assert comparable(hot) == comparable(framework)
        assert (await stack.http.get(status_url, headers=other.headers)).status_code == 200


@pytest.mark.parametrize(("hot_request", "framework_request"), _BOTH_WAYS)
async def test_over_the_rate_limit_is_the_same_429_on_both_paths(
    stack: Stack,
    hot_request: tuple[str, str, dict[str, Any]],
    framework_request: tuple[str, str, dict[str, Any]],
) -> None:
    limited = await stack.new_client("limited", rateLimit={"perSecond": 0.01, "burst": 1})
    first = await stack.http.get(f"/jobs/rep_{'b' * 32}", headers=limited.headers)
    assert first.status_code == 404 and first.headers["ratelimit-remaining"] == "0"
    method, url, options = _with_headers(hot_request, limited.headers)
    hot = await stack.http.request(method, url, **options)
    method, url, options = _with_headers(framework_request, limited.headers)
    framework = await stack.http.request(method, url, **options)
    assert hot.status_code == 429
    assert hot.headers["ratelimit-limit"] == "1"
    assert comparable(hot) == comparable(framework)


@pytest.mark.settings(max_queue_depth=1)
@pytest.mark.parametrize(
    ("route", "body"),
    [("/notifications", {"type": "welcome", "userId": "d"}), ("/reports", {"userId": "d"})],
)
async def test_a_full_queue_is_the_same_503_on_both_paths(
    stack: Stack, route: str, body: dict[str, str]
) -> None:
    if route == "/reports":
        body = {**body, "reportType": "activity"}
    assert (await stack.http.post(route, json=body)).status_code == 202
    hot = await stack.http.post(route, json={**body, "userId": "d2"})
    framework = await stack.http.post(
        route, json={**body, "userId": "d3"}, headers={"idempotency-key": "k-full"}
    )
    assert hot.status_code == 503
    assert hot.json()["type"] == "urn:errand:problem:queue-full"
    assert comparable(hot) == comparable(framework)
