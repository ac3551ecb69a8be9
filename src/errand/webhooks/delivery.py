"""One webhook delivery attempt over HTTP: resolve and check, sign, POST to the checked address.

The request goes to the exact address the SSRF guard approved: the URL's host is
replaced by that address while the `Host` header keeps the original name and,
for https, TLS uses it as SNI and checks the certificate against it. There is
no second DNS lookup, so no rebinding window, and no connection is reused
across deliveries (keep-alive off), so a TLS session set up for one name never
carries a request for another. Redirects are not followed and proxies from the
environment are ignored: either could send the request somewhere unchecked.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from dataclasses import dataclass

import certifi
import httpx
from opentelemetry.trace import Span

from errand import __version__, tracing
from errand.clock import now_ms
from errand.webhooks.signing import Signer
from errand.webhooks.ssrf import (
    IPAddress,
    UnresolvableWebhookHost,
    UnsafeWebhookUrl,
    WebhookTarget,
    resolve_webhook_url,
)

USER_AGENT = f"errand-webhooks/{__version__}"


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What one attempt achieved. `permanent` failures are not worth retrying."""

    delivered: bool
    status_code: int | None = None
    error: str | None = None
    permanent: bool = False


@dataclass(frozen=True, slots=True)
class DeliveryRequest:
    url: str
    webhook_id: str
    body: bytes


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())


async def deliver(
    request: DeliveryRequest, signer: Signer, *, timeout_s: float, allow_private: bool
) -> DeliveryOutcome:
    """Make one attempt; never raises for a network or receiver problem (see the outcome)."""
    try:
        target = await resolve_webhook_url(request.url, allow_private=allow_private)
    except UnsafeWebhookUrl as err:
        return DeliveryOutcome(False, error=f"refused: {err}", permanent=True)
    except UnresolvableWebhookHost as err:
        return DeliveryOutcome(False, error=str(err))
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        **signer.headers(request.webhook_id, now_ms() // 1000, request.body),
    }
    with tracing.client_span("webhook POST", _span_attributes(target)) as span:
        tracing.inject(headers)  # traceparent: the receiver can join the job's trace
        outcome = await _post(target, headers, request.body, timeout_s)
        if span is not None:
            _record(span, outcome)
    return outcome


async def _post(
    target: WebhookTarget, headers: dict[str, str], body: bytes, timeout_s: float
) -> DeliveryOutcome:
    try:
        async with asyncio.timeout(timeout_s):
            code = await _post_pinned(target, headers, body, timeout_s)
    except (TimeoutError, httpx.TimeoutException):
        return DeliveryOutcome(False, error=f"no answer within {timeout_s:g} s")
    except httpx.HTTPError as err:
        return DeliveryOutcome(False, error=_describe(err))
    if 200 <= code < 300:
        return DeliveryOutcome(True, code)
    hint = " (redirects are not followed)" if 300 <= code < 400 else ""
    return DeliveryOutcome(False, code, f"the receiver answered {code}{hint}")


async def _post_pinned(
    target: WebhookTarget, headers: dict[str, str], body: bytes, timeout_s: float
) -> int:
    """POST to each checked address in turn until one accepts the connection; its status."""
    original = httpx.URL(target.url)
    headers = {**headers, "host": original.netloc.decode("ascii")}
    extensions = {}
    if target.scheme == "https" and not target.host_is_address:
        extensions["sni_hostname"] = original.raw_host.decode("ascii")
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        trust_env=False,
        verify=_tls_context(),
        limits=httpx.Limits(max_keepalive_connections=0),
    ) as client:
        last_error: httpx.ConnectError | None = None
        for address in target.addresses:
            url = _pinned_url(original, address, target.port)
            try:
                async with client.stream(
                    "POST", url, content=body, headers=headers, extensions=extensions
                ) as response:
                    return response.status_code
            except httpx.ConnectError as err:
                last_error = err
        assert last_error is not None  # addresses is never empty
        raise last_error


def _span_attributes(target: WebhookTarget) -> dict[str, str | int]:
    """Method, host and port only: a webhook URL's path and query may hold the receiver's
    own token, which has no place in a trace backend."""
    return {
        "http.request.method": "POST",
        "server.address": target.hostname,
        "server.port": target.port,
        "url.scheme": target.scheme,
    }


def _record(span: Span, outcome: DeliveryOutcome) -> None:
    if outcome.status_code is not None:
        span.set_attribute("http.response.status_code", outcome.status_code)
    if not outcome.delivered:
        code = outcome.status_code
        tracing.failed(span, outcome.error or "not delivered", str(code) if code else "")


def _pinned_url(original: httpx.URL, address: IPAddress, port: int) -> httpx.URL:
    return original.copy_with(host=str(address), port=port)


def _describe(err: httpx.HTTPError) -> str:
    """What failed, for the delivery's public `lastError`: the error's kind, never the
    address it was talking to (the messages name the pinned IP and port)."""
    if isinstance(err, httpx.ConnectError):
        cause = err.__cause__ or err.__context__
        if isinstance(cause, ssl.SSLError) or "SSL" in str(err):
            return "could not connect: the TLS handshake failed"
        return "could not connect"
    if isinstance(err, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return f"the connection broke ({type(err).__name__})"
    return type(err).__name__
