"""errand.webhooks.verify on real deliveries from `errand up` to a receiver on 127.0.0.1."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from errand.client import AsyncClient
from errand.webhooks import InvalidWebhook, verify
from support.webhook_receiver import serve_receiver

OTHER_SECRET = "whsec_dGhpcyBpcyBub3QgdGhlIHNlY3JldCBvZiB0aGlzIGVycmFuZA=="


async def test_verify_accepts_a_real_delivery_and_rejects_tampering(errand_server: Any) -> None:
    async with serve_receiver() as receiver, AsyncClient(errand_server.base_url) as errand:
        accepted = await errand.submit_report(
            f"u-{uuid.uuid4().hex[:12]}", "activity", webhook_url=receiver.url("/hook")
        )
        (delivery,) = await receiver.wait_for("/hook", timeout_s=30)
    secret = errand_server.webhook_secret
    event = verify(delivery.body, delivery.headers, secret)
    assert event["type"] == "report.completed"
    assert event["data"]["jobId"] == accepted.job_id
    upper = {name.upper(): value for name, value in delivery.headers.items()}
    assert verify(delivery.body.decode(), upper, secret) == event  # str body, any header case

    tampered = delivery.body.replace(b"completed", b"failed")
    assert tampered != delivery.body
    with pytest.raises(InvalidWebhook, match="No matching signature"):
        verify(tampered, delivery.headers, secret)
    with pytest.raises(InvalidWebhook):
        verify(delivery.body, delivery.headers, OTHER_SECRET)
    unsigned = {k: v for k, v in delivery.headers.items() if k != "webhook-signature"}
    with pytest.raises(InvalidWebhook, match="Missing required headers"):
        verify(delivery.body, unsigned, secret)
    with pytest.raises(InvalidWebhook):
        verify(delivery.body, {**delivery.headers, "webhook-signature": "garbage"}, secret)
