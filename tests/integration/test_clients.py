"""Clients and API keys: the admin routes, and the 401 of every way a key can be wrong."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest

from errand.jobids import QueueName, new_job_id
from support.stack import Stack
from support.waiting import wait_for

CLIENT_ROUTES = [
    ("POST", "/reports", {"userId": "u-1", "reportType": "activity"}),
    ("POST", "/notifications", {"type": "welcome", "userId": "u-1"}),
    ("GET", f"/jobs/{new_job_id(QueueName.REPORTS)}", None),
    ("GET", f"/jobs/{new_job_id(QueueName.REPORTS)}?wait=1", None),
    ("GET", f"/jobs/{new_job_id(QueueName.REPORTS)}/events", None),
    ("GET", f"/notifications/{new_job_id(QueueName.NOTIFICATIONS)}", None),
    ("GET", f"/notifications/{new_job_id(QueueName.NOTIFICATIONS)}?wait=1", None),
    ("GET", f"/notifications/{new_job_id(QueueName.NOTIFICATIONS)}/events", None),
    ("GET", f"/reports/{new_job_id(QueueName.REPORTS)}/result", None),
]


async def _created_ids(stack: Stack) -> int:
    return int(await stack.redis.zcard(stack.keys.clients()))


async def test_a_client_is_made_with_its_key_shown_once(stack: Stack) -> None:
    reply = await stack.http.post(
        "/admin/clients",
        json={"name": "shop", "rateLimit": {"perSecond": 50, "burst": 100}},
        headers=stack.admin,
    )
    assert reply.status_code == 201
    made = reply.json()
    assert set(made) == {
        "clientId",
        "name",
        "createdAt",
        "rateLimit",
        "notifyPerUserPerHour",
        "keyId",
        "apiKey",
    }
    assert made["name"] == "shop" and made["rateLimit"] == {"perSecond": 50, "burst": 100}
    assert made["notifyPerUserPerHour"] == stack.settings.notify_per_user_per_hour
    assert re.fullmatch(r"ek_[0-9a-f]{16}_[A-Za-z0-9_-]{32,}", made["apiKey"])
    assert made["keyId"] in made["apiKey"]

    listed = (await stack.http.get("/admin/clients", headers=stack.admin)).json()["items"]
    mine = next(c for c in listed if c["clientId"] == made["clientId"])
    assert mine["keys"] == [{"keyId": made["keyId"], "createdAt": made["createdAt"]}]
    assert "apiKey" not in str(listed) and made["apiKey"] not in str(listed)
    assert made["apiKey"] not in await _everything_stored(stack)  # only its hash is kept


async def _everything_stored(stack: Stack) -> str:
    """Every hash and string under the test's prefix, as one text."""
    values = []
    async for key in stack.redis.scan_iter(match=f"{stack.settings.queue_prefix}*"):
        kind = await stack.redis.type(key)
        if kind == "hash":
            values.append(repr(await stack.redis.hgetall(key)))
        elif kind == "string":
            values.append(await stack.redis.get(key))
    return "\n".join(values)


async def test_defaults_apply_when_a_client_names_no_limits(stack: Stack) -> None:
    made = (
        await stack.http.post("/admin/clients", json={"name": "plain"}, headers=stack.admin)
    ).json()
    assert made["rateLimit"] == {
        "perSecond": stack.settings.rate_limit_per_second,
        "burst": stack.settings.rate_limit_burst,
    }


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "x" * 65},
        {"name": "tab\there"},
        {"name": 7},
        {"name": "ok", "rateLimit": {"perSecond": -1, "burst": 5}},
        {"name": "ok", "rateLimit": {"perSecond": 1}},
        {"name": "ok", "rateLimit": {"perSecond": 1, "burst": True}},
        {"name": "ok", "notifyPerUserPerHour": -1},
    ],
)
async def test_a_bad_client_body_is_422_and_makes_nothing(
    stack: Stack, body: dict[str, object]
) -> None:
    before = await _created_ids(stack)
    reply = await stack.http.post("/admin/clients", json=body, headers=stack.admin)
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert await _created_ids(stack) == before


async def test_integral_numbers_are_integers_in_a_client_body(stack: Stack) -> None:
    body = {"name": "ok", "rateLimit": {"perSecond": 2, "burst": 10.0}, "notifyPerUserPerHour": 3.0}
    reply = await stack.http.post("/admin/clients", json=body, headers=stack.admin)
    assert reply.status_code == 201, reply.text
    made = reply.json()
    assert (made["rateLimit"]["burst"], made["notifyPerUserPerHour"]) == (10, 3)


async def test_rotation_add_a_key_then_revoke_the_old_one(stack: Stack) -> None:
    shop = await stack.new_client("shop")
    added = await stack.http.post(f"/admin/clients/{shop.client_id}/keys", headers=stack.admin)
    assert added.status_code == 201
    new_key = added.json()
    assert set(new_key) == {"keyId", "apiKey", "createdAt"}
    new_headers = {"Authorization": f"Bearer {new_key['apiKey']}"}
    posted = await stack.http.post(
        "/notifications", json={"type": "welcome", "userId": "u-rot"}, headers=shop.headers
    )
    assert posted.status_code == 202
    # The new key acts for the same client: it sees the old key's job.
    seen = await stack.http.get(posted.headers["location"], headers=new_headers)
    assert seen.status_code == 200

    path = f"/admin/clients/{shop.client_id}/keys/{shop.key_id}"
    assert (await stack.http.delete(path, headers=stack.admin)).status_code == 204
    assert (await stack.http.delete(path, headers=stack.admin)).status_code == 404

    async def old_key_status() -> int:
        reply = await stack.http.get(posted.headers["location"], headers=shop.headers)
        return reply.status_code

    await wait_for(old_key_status, lambda s: s == 401, timeout_s=2, what="old key refused")
    assert (
        await stack.http.get(posted.headers["location"], headers=new_headers)
    ).status_code == 200
    listed = (await stack.http.get("/admin/clients", headers=stack.admin)).json()["items"]
    mine = next(c for c in listed if c["clientId"] == shop.client_id)
    assert [k["keyId"] for k in mine["keys"]] == [new_key["keyId"]]


async def test_deleting_a_client_revokes_every_key(stack: Stack) -> None:
    shop = await stack.new_client("shop")
    extra = (
        await stack.http.post(f"/admin/clients/{shop.client_id}/keys", headers=stack.admin)
    ).json()
    path = f"/admin/clients/{shop.client_id}"
    assert (await stack.http.delete(path, headers=stack.admin)).status_code == 204
    for key in (shop.api_key, extra["apiKey"]):

        async def status(key: str = key) -> int:
            headers = {"Authorization": f"Bearer {key}"}
            return (
                await stack.http.get(f"/jobs/{new_job_id(QueueName.REPORTS)}", headers=headers)
            ).status_code

        await wait_for(status, lambda s: s == 401, timeout_s=2, what="deleted client's key")
    listed = (await stack.http.get("/admin/clients", headers=stack.admin)).json()["items"]
    assert shop.client_id not in {c["clientId"] for c in listed}
    assert (await stack.http.delete(path, headers=stack.admin)).status_code == 404


async def test_deleting_a_client_deletes_its_schedules(stack: Stack) -> None:
    shop = await stack.new_client("shop")
    body = {"every": 3600, "job": {"queue": "notifications", "type": "welcome", "userId": "7"}}
    made = await stack.http.post("/schedules", json=body, headers=shop.headers)
    assert made.status_code == 201, made.text
    mine = await stack.http.post("/schedules", json=body)
    assert mine.status_code == 201, mine.text
    assert len(await stack.members(QueueName.NOTIFICATIONS, "repeat")) == 2
    path = f"/admin/clients/{shop.client_id}"
    assert (await stack.http.delete(path, headers=stack.admin)).status_code == 204
    # BullMQ's scheduler is gone too
    assert len(await stack.members(QueueName.NOTIFICATIONS, "repeat")) == 1
    ours = (await stack.http.get("/schedules")).json()["items"]
    assert [s["scheduleId"] for s in ours] == [mine.json()["scheduleId"]]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/admin/clients/cl_0000000000000000/keys"),
        ("DELETE", "/admin/clients/cl_0000000000000000/keys/0000000000000000"),
        ("DELETE", "/admin/clients/cl_0000000000000000"),
        ("GET", "/admin/clients/cl_0000000000000000"),
    ],
)
async def test_unknown_ids_are_404(stack: Stack, method: str, path: str) -> None:
    reply = await stack.http.request(method, path, headers=stack.admin)
    assert reply.status_code == 404
    assert reply.headers["content-type"] == "application/problem+json"


async def test_a_key_of_another_client_cannot_be_revoked_through_this_one(stack: Stack) -> None:
    one, two = await stack.new_client("one"), await stack.new_client("two")
    path = f"/admin/clients/{one.client_id}/keys/{two.key_id}"
    assert (await stack.http.delete(path, headers=stack.admin)).status_code == 404
    assert (
        await stack.http.get(f"/jobs/{new_job_id(QueueName.REPORTS)}", headers=two.headers)
    ).status_code == 404


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/admin/clients"), ("POST", "/admin/clients")]
)
async def test_client_admin_routes_need_the_admin_token(
    stack: Stack, method: str, path: str
) -> None:
    assert stack.client is not None
    missing = await stack.http.request(method, path, json={"name": "x"})
    as_api_key = await stack.http.request(
        method, path, json={"name": "x"}, headers=stack.client.headers
    )
    assert missing.status_code == 401
    assert as_api_key.status_code == 403


def _bad_authorizations(stack: Stack) -> dict[str, dict[str, str]]:
    assert stack.client is not None and stack.settings.admin_token is not None
    good = stack.client.api_key
    admin = stack.settings.admin_token.get_secret_value()
    return {
        "missing": {},
        "blank": {"Authorization": ""},
        "not bearer": {"Authorization": f"Basic {good}"},
        "empty bearer": {"Authorization": "Bearer"},
        "malformed": {"Authorization": "Bearer not-a-key"},
        "unknown": {"Authorization": f"Bearer ek_{'0' * 16}_{'A' * 32}"},
        "wrong secret": {"Authorization": f"Bearer {good[:-4]}AAAA"},
        "admin token": {"Authorization": f"Bearer {admin}"},
    }


@pytest.mark.parametrize(("method", "path", "body"), CLIENT_ROUTES)
async def test_every_client_route_refuses_a_bad_key_with_401(
    stack: Stack, method: str, path: str, body: dict[str, object] | None
) -> None:
    before = len(await stack.members("notifications", "wait"))
    for case, headers in _bad_authorizations(stack).items():
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as bare:  # no key
            reply = await bare.request(method, path, json=body, headers=headers)
        assert reply.status_code == 401, (case, reply.text)
        assert reply.headers["www-authenticate"].startswith("Bearer"), case
        assert reply.headers["content-type"] == "application/problem+json"
        assert reply.json()["type"] == "urn:errand:problem:unauthorized"
        assert "ratelimit-limit" not in reply.headers
        secret = headers.get("Authorization", "").partition(" ")[2]
        assert not secret or secret not in reply.text
    assert len(await stack.members("notifications", "wait")) == before


async def test_open_routes_need_no_key(stack: Stack) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"):
        reply = await stack.http.get(path, headers={"Authorization": ""})
        assert reply.status_code == 200, path


@pytest.mark.settings(auth="none")
async def test_with_auth_none_no_key_is_needed_and_jobs_are_anonymous(stack: Stack) -> None:
    assert stack.client is None
    posted = await stack.http.post("/notifications", json={"type": "welcome", "userId": "u-an"})
    assert posted.status_code == 202
    job_id = posted.json()["jobId"]
    admin_view = (await stack.http.get(f"/admin/jobs/{job_id}", headers=stack.admin)).json()
    assert admin_view["clientId"] == "anonymous"
    assert (await stack.http.get(posted.headers["location"])).status_code == 200


async def test_concurrent_requests_with_one_key_share_one_lookup(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = await stack.new_client("crowd")
    store = stack.app.state.services.gate.store
    lookups: list[str] = []
    resolve = store.resolve

    async def counted(api_key: str) -> Any:
        lookups.append(api_key)
        return await resolve(api_key)

    monkeypatch.setattr(store, "resolve", counted)
    path = f"/jobs/{new_job_id(QueueName.REPORTS)}"
    replies = await asyncio.gather(*(stack.http.get(path, headers=shop.headers) for _ in range(20)))
    assert [r.status_code for r in replies] == [404] * 20  # authenticated, then not found
    assert lookups == [shop.api_key]
