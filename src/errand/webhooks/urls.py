"""Webhook URL rules that need no network: scheme, length, a host."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
ALLOWED_SCHEMES = frozenset({"http", "https"})


def check_webhook_url_syntax(value: Any) -> Any:
    """Pydantic before-validator: an http(s) URL of at most 2048 chars with a host."""
    if not isinstance(value, str):
        raise ValueError("webhookUrl must be a string")
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"webhookUrl must be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as err:
        raise ValueError(f"webhookUrl is not a valid URL: {err}") from err
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise ValueError("webhookUrl must use http or https")
    if not parts.hostname:
        raise ValueError("webhookUrl must name a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("webhookUrl must not carry credentials")
    del port
    return value
