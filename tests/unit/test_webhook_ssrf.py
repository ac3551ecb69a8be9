"""The SSRF guard's rules: address classes, embedded IPv4, numeric hosts, resolution."""

from __future__ import annotations

import ipaddress

import pytest

from errand.errors import InvalidInput
from errand.webhooks.ssrf import (
    UnresolvableWebhookHost,
    UnsafeWebhookUrl,
    address_refusal,
    check_webhook_destination,
    resolve_webhook_url,
)

REFUSED_ADDRESSES = [
    "127.0.0.1",
    "127.255.0.9",
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.1.1",
    "100.64.0.1",
    "100.127.255.254",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "240.0.0.1",
    "192.0.2.1",
    "198.18.0.1",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",
    "ff02::1",
    "fec0::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",
    "::ffff:0:7f00:1",
    "::ffff:100.64.0.1",
    "2002:7f00:1::",
    "2002:a00:1::",
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
]
PUBLIC_ADDRESSES = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
]


@pytest.mark.parametrize("text", REFUSED_ADDRESSES)
def test_non_public_addresses_are_refused(text: str) -> None:
    assert address_refusal(ipaddress.ip_address(text)) is not None


@pytest.mark.parametrize("text", PUBLIC_ADDRESSES)
def test_public_addresses_pass(text: str) -> None:
    assert address_refusal(ipaddress.ip_address(text)) is None


def test_embedded_ipv4_is_named_in_the_reason() -> None:
    reason = address_refusal(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert reason is not None and "loopback" in reason and "embedded" in reason
    assert address_refusal(ipaddress.ip_address("169.254.169.254")) == "a cloud metadata address"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://[::1]:8080/x",
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost:9/",
        "http://LOCALHOST./",
        "http://api.localhost/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://017700000001/",
        "http://127.1/",
        "http://0177.0.0.1/",
        "http://0/",
        "http://[fd00:ec2::254]/",
        "https://100.64.0.1/",
    ],
)
async def test_private_destinations_are_refused(url: str) -> None:
    with pytest.raises(UnsafeWebhookUrl):
        await resolve_webhook_url(url, allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://",
        "http://user:pw@8.8.8.8/",
        "gopher://8.8.8.8/",
    ],
)
async def test_syntax_rules_hold_even_when_private_is_allowed(url: str) -> None:
    with pytest.raises(UnsafeWebhookUrl):
        await resolve_webhook_url(url, allow_private=True)


async def test_numeric_hosts_are_read_as_the_resolver_reads_them() -> None:
    for url in ("http://2130706433/", "http://0x7f000001/", "http://017700000001/"):
        target = await resolve_webhook_url(url, allow_private=True)
        assert target.addresses == (ipaddress.ip_address("127.0.0.1"),)
        assert target.host_is_address


async def test_public_literal_passes_with_its_port() -> None:
    target = await resolve_webhook_url("https://8.8.8.8/hook", allow_private=False)
    assert target.port == 443 and target.scheme == "https"
    target = await resolve_webhook_url("http://[2606:4700:4700::1111]:8080/", allow_private=False)
    assert target.port == 8080 and str(target.addresses[0]) == "2606:4700:4700::1111"


async def test_allow_private_lifts_the_address_rule_only() -> None:
    target = await resolve_webhook_url("http://localhost:8080/hook", allow_private=True)
    assert ipaddress.ip_address("127.0.0.1") in target.addresses
    assert target.hostname == "localhost" and not target.host_is_address


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(UnresolvableWebhookHost):
        await resolve_webhook_url("https://no-such-host.invalid/x", allow_private=True)


async def test_submit_time_check_answers_with_a_webhook_url_field_error() -> None:
    await check_webhook_destination(None, allow_private=False)
    for url in ("http://127.0.0.1/", "https://no-such-host.invalid/"):
        with pytest.raises(InvalidInput) as caught:
            await check_webhook_destination(url, allow_private=False)
        assert [e.field for e in caught.value.errors] == ["webhookUrl"]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.170.2/v2/credentials",
        "http://169.254.1.1/",
        "http://[fe80::1]/",
        "http://[fe80::a9fe:a9fe%25eth0]/",
        "http://100.100.100.200/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://192.0.0.192/opc/v1/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[2002:a9fe:a9fe::1]/",
        "http://2852039166/",
        "http://0xa9.0xfe.0xa9.0xfe/",
    ],
)
async def test_link_local_and_metadata_are_refused_even_when_private_is_allowed(
    url: str,
) -> None:
    with pytest.raises(UnsafeWebhookUrl, match=r"metadata|link-local"):
        await resolve_webhook_url(url, allow_private=True)


async def test_allow_private_still_reaches_loopback_and_private_ranges() -> None:
    for url in ("http://127.0.0.1:8080/", "http://10.1.2.3/", "http://[fd12::1]/"):
        target = await resolve_webhook_url(url, allow_private=True)
        assert target.addresses
