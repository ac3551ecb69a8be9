"""GET /jobs and POST /notifications/batch on a real 3-master Valkey Cluster: the adds and
their index entries go in one MULTI on the hash tag's slot."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from conftest import ValkeyCluster
from errand.redisio.connection import is_cluster
from support.stack import Stack, run_stack
from support.stack import test_settings as settings_for


@pytest.fixture
async def cluster_stack(valkey_cluster: ValkeyCluster) -> AsyncIterator[Stack]:
    settings = settings_for(valkey_cluster.url)
    assert is_cluster(settings)
    async with run_stack(settings) as stack:
        yield stack


async def test_batch_and_listing_on_the_cluster(cluster_stack: Stack) -> None:
    http = cluster_stack.http
    items = [
        {"type": "welcome", "userId": f"u-{i % 3}", "idempotencyKey": f"k-{i}"} for i in range(30)
    ]
    first = (await http.post("/notifications/batch", json={"items": items})).json()["items"]
    again = (await http.post("/notifications/batch", json={"items": items})).json()["items"]
    assert all(r["status"] == 202 for r in first)
    assert [r["jobId"] for r in again] == [r["jobId"] for r in first]
    assert all(r.get("replayed") for r in again)
    report = await http.post("/reports", json={"userId": "u-0", "reportType": "activity"})
    assert report.status_code == 202
    listed: list[str] = []
    cursor = None
    while True:
        params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        page = (await http.get("/jobs", params=params)).json()
        listed += [item["jobId"] for item in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert len(listed) == len(set(listed)) == 31
    assert set(listed) == {r["jobId"] for r in first} | {report.json()["jobId"]}
    mine = (await http.get("/jobs", params={"userId": "u-0", "limit": 100})).json()["items"]
    assert len(mine) == 11
