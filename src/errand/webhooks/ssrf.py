"""The SSRF guard: which addresses a webhook may reach, and resolving a URL to checked addresses.

A webhook URL is attacker-controlled input that makes errand send requests from
inside its network, so the rules are: only http(s) (see `urls.py`), and every
address the host resolves to must be public. "Public" is the IANA
special-purpose registry's "globally reachable" (Python's `is_global`) minus
multicast and the cloud metadata endpoints. IPv4-mapped and NAT64 addresses are
judged by the IPv4 address they stand for, and IPv6 forms that carry one
(IPv4-compatible, 6to4, Teredo) by that address too. Numeric hosts in the legacy
forms `inet_aton` accepts (`2130706433`, `0x7f000001`, `017700000001`, `127.1`)
are read the way the C resolver reads them, and `localhost` and the names under
it are refused without a lookup.

`ERRAND_WEBHOOK_ALLOW_PRIVATE=true` lifts the rules for loopback and private
ranges (local development, a receiver on the same network), never for
link-local addresses (169.254.0.0/16, fe80::/10) and the metadata endpoints
(`ALWAYS_REFUSED`, in any IPv6 form that carries one): on every major cloud
they hand out the instance's credentials.

The check runs at submit time and again at delivery time, where the caller
connects to exactly the addresses returned here, so a DNS answer that changes
between the check and the connection (DNS rebinding) cannot redirect it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from errand.errors import FieldError, InvalidInput
from errand.webhooks.urls import check_webhook_url_syntax

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DNS_TIMEOUT_S = 5.0
DEFAULT_PORTS = {"http": 80, "https": 443}

# AWS, GCP, Azure, OpenStack, DigitalOcean (169.254.169.254 and AWS's IPv6 fd00:ec2::254),
# ECS task metadata (169.254.170.2), Alibaba (100.100.100.200), Oracle (192.0.0.192).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "fd00:ec2::254",
        "169.254.170.2",
        "100.100.100.200",
        "192.0.0.192",
    )
)
SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
_LEGACY_IPV4 = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$", re.I)

_RULES: tuple[tuple[str, str], ...] = (
    ("is_unspecified", "an unspecified address"),
    ("is_loopback", "a loopback address"),
    ("is_link_local", "a link-local address"),
    ("is_multicast", "a multicast address"),
    ("is_private", "a private address"),
    ("is_reserved", "a reserved address"),
)


class UnsafeWebhookUrl(Exception):
    """The URL breaks a rule: its scheme, its syntax, or an address it resolves to."""


class UnresolvableWebhookHost(Exception):
    """The host name does not resolve (now); at delivery time this is worth retrying."""


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """A webhook URL taken apart, with the checked addresses to connect to."""

    url: str
    scheme: str
    hostname: str
    port: int
    addresses: tuple[IPAddress, ...]

    @property
    def host_is_address(self) -> bool:
        return _literal_address(self.hostname) is not None


def address_refusal(address: IPAddress) -> str | None:
    """Why a webhook may not reach `address`, or None when it is public."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        translated = _translated_ipv4(address)
        if translated is not None:  # the packets go to this IPv4 address: judge it alone
            return _embedded_refusal(address, [translated])
        reason = _embedded_refusal(address, _embedded_ipv4(address))
        if reason is not None:
            return reason
    for attribute, reason in _RULES:
        if getattr(address, attribute):
            return reason
    if isinstance(address, ipaddress.IPv4Address) and address in SHARED_ADDRESS_SPACE:
        return "a shared (carrier-grade NAT) address"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "a site-local address"
    if not address.is_global:
        return "not a public address"
    return None


def always_refused(address: IPAddress) -> str | None:
    """Why a webhook may never reach `address`, even with private targets allowed: a
    metadata endpoint or a link-local address, also inside an IPv6 form. None otherwise."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_link_local:
        return "a link-local address"
    if isinstance(address, ipaddress.IPv6Address):
        translated = _translated_ipv4(address)
        carried = [translated] if translated is not None else _embedded_ipv4(address)
        for inner in carried:
            reason = always_refused(inner)
            if reason is not None:
                return f"{reason} (embedded in {address})"
    return None


def _embedded_refusal(
    address: ipaddress.IPv6Address, embedded: list[ipaddress.IPv4Address]
) -> str | None:
    for inner in embedded:
        reason = address_refusal(inner)
        if reason is not None:
            return f"{reason} (embedded in {address})"
    return None


def _translated_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped or NAT64 (64:ff9b::/96) address stands for."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses carried inside an IPv6 one: IPv4-compatible, 6to4, Teredo."""
    found = []
    if int(address) >> 32 == 0:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


def _literal_address(host: str) -> IPAddress | None:
    """An IP literal, including the legacy numeric IPv4 forms; None for a host name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not _LEGACY_IPV4.match(host):
        return None
    try:
        packed = socket.inet_aton(host.rstrip("."))
    except OSError as err:
        raise UnsafeWebhookUrl(f"host {host!r} is not a valid IPv4 address") from err
    return ipaddress.IPv4Address(packed)


def _is_localhost_name(hostname: str) -> bool:
    """RFC 6761: `localhost` and every name under it are loopback, whatever DNS says."""
    name = hostname.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


def split_webhook_url(url: str) -> SplitResult:
    """The URL's parts once its syntax is valid. Raises UnsafeWebhookUrl."""
    try:
        check_webhook_url_syntax(url)
    except ValueError as err:
        raise UnsafeWebhookUrl(str(err)) from err
    return urlsplit(url)


async def resolve_webhook_url(
    url: str, *, allow_private: bool, timeout_s: float = DNS_TIMEOUT_S
) -> WebhookTarget:
    """Resolve the URL's host without blocking the loop and check every address.

    Raises UnsafeWebhookUrl when a rule refuses the URL (with `allow_private` only
    the syntax rules and `always_refused` apply), UnresolvableWebhookHost when the
    name does not resolve within `timeout_s`.
    """
    parts = split_webhook_url(url)
    scheme, hostname = parts.scheme.lower(), parts.hostname or ""
    port = parts.port or DEFAULT_PORTS[scheme]
    literal = _literal_address(hostname)
    if not allow_private and _is_localhost_name(hostname):
        raise UnsafeWebhookUrl(f"webhookUrl host {hostname!r} is a loopback name")
    addresses = (literal,) if literal is not None else await _resolve(hostname, port, timeout_s)
    refusal = always_refused if allow_private else address_refusal
    for address in addresses:
        reason = refusal(address)
        if reason is not None:
            shown = hostname if literal is None else str(address)
            raise UnsafeWebhookUrl(f"webhookUrl host {shown!r} resolves to {reason}")
    return WebhookTarget(url, scheme, hostname, port, addresses)


async def _resolve(hostname: str, port: int, timeout_s: float) -> tuple[IPAddress, ...]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            infos = await loop.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    except TimeoutError as err:
        raise UnresolvableWebhookHost(
            f"webhookUrl host {hostname!r} did not resolve within {timeout_s:g} s"
        ) from err
    except (OSError, UnicodeError) as err:
        raise UnresolvableWebhookHost(f"webhookUrl host {hostname!r} does not resolve") from err
    addresses: list[IPAddress] = []
    for family, *_, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnresolvableWebhookHost(f"webhookUrl host {hostname!r} has no IP address")
    return tuple(addresses)


async def check_webhook_destination(url: str | None, *, allow_private: bool) -> None:
    """Submit-time check of a webhookUrl: it must resolve, and only to public addresses.

    Raises InvalidInput (a 422 on the `webhookUrl` field) otherwise.
    """
    if not url:
        return
    try:
        await resolve_webhook_url(url, allow_private=allow_private)
    except (UnsafeWebhookUrl, UnresolvableWebhookHost) as err:
        raise InvalidInput(
            "the request breaks the rules below", [FieldError("webhookUrl", str(err))]
        ) from err
