"""Delivery-time rules that need no receiver: refusals are permanent, the URL is pinned."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from errand.server.embedded import free_port
from errand.webhooks.delivery import DeliveryRequest, _pinned_url, deliver
from errand.webhooks.signing import Signer

SIGNER = Signer.from_secrets("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/",
        "http://[::ffff:10.0.0.1]/",
        "http://2130706433/",
        "https://169.254.169.254/latest/meta-data/",
    ],
)
async def test_a_private_destination_is_refused_before_any_connection(url: str) -> None:
    outcome = await deliver(
        DeliveryRequest(url, "msg_1", b"{}"), SIGNER, timeout_s=1, allow_private=False
    )
    assert not outcome.delivered and outcome.permanent
    assert outcome.status_code is None
    assert outcome.error is not None and outcome.error.startswith("refused: ")


async def test_a_host_that_stops_resolving_is_worth_retrying() -> None:
    outcome = await deliver(
        DeliveryRequest("https://gone.invalid/x", "msg_2", b"{}"),
        SIGNER,
        timeout_s=1,
        allow_private=False,
    )
    assert not outcome.delivered and not outcome.permanent
    assert outcome.error is not None and "does not resolve" in outcome.error


def test_the_request_goes_to_the_checked_address() -> None:
    original = httpx.URL("https://hooks.example.com/in?x=1")
    pinned = _pinned_url(original, ipaddress.ip_address("2606:4700::1"), 443)
    assert pinned.host == "2606:4700::1" and pinned.port in (None, 443)
    assert pinned.path == "/in" and pinned.query == b"x=1" and pinned.scheme == "https"
    assert original.netloc == b"hooks.example.com"  # what the Host header carries


async def test_a_refused_connection_is_reported_without_the_address() -> None:
    port = free_port()  # nothing listens there
    outcome = await deliver(
        DeliveryRequest(f"http://127.0.0.1:{port}/hook", "msg_3", b"{}"),
        SIGNER,
        timeout_s=2,
        allow_private=True,
    )
    assert not outcome.delivered and not outcome.permanent
    assert outcome.error == "could not connect"
