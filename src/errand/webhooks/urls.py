"""Webhook URL rules that need no network: scheme, length, no control characters, a host,
no user info."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
ALLOWED_SCHEMES = frozenset({"http", "https"})
# The OpenAPI document publishes this pattern as the URL's shape: http(s), an authority
# that names a host (not a port alone) and carries no user info, then anything else,
# with no C0 control character or DEL anywhere.
_ANY = r"[^\x00-\x1f\x7f]"
_AUTHORITY = r"[^:/?#@\x00-\x1f\x7f][^/?#@\x00-\x1f\x7f]*"
URL_PATTERN = rf"^[Hh][Tt][Tt][Pp][Ss]?://{_AUTHORITY}([/?#]{_ANY}*)?$"
_URL_SHAPE = re.compile(URL_PATTERN)
# C0 controls (tab, CR and LF included) and DEL: urlsplit silently drops some of them,
# so a URL that reads one way in a log would be requested another way.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def check_webhook_url_syntax(value: Any) -> Any:
    """Pydantic before-validator: an http(s) URL of at most 2048 chars, no control
    characters, with a host."""
    if not isinstance(value, str):
        raise ValueError("webhookUrl must be a string")
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"webhookUrl must be at most {MAX_URL_LENGTH} characters")
    control = _CONTROL_CHARACTERS.search(value)
    if control is not None:
        raise ValueError(
            f"webhookUrl must not contain control characters "
            f"(found U+{ord(control.group()):04X} at position {control.start()})"
        )
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
    if not _URL_SHAPE.fullmatch(value):
        raise ValueError("webhookUrl must be http(s)://host[:port][/path][?query][#fragment]")
    del port
    return value
