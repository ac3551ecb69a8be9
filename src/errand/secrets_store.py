"""Secrets `errand up` generates once and keeps in the data directory (mode 0600): the admin
token, the webhook secret, the embedded Valkey's password and the API key of the
`default` client."""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

FILE_NAME = "secrets.json"


@dataclass(frozen=True)
class LocalSecrets:
    admin_token: str
    webhook_secret: str
    redis_password: str = ""  # the embedded Valkey's `requirepass`; empty in an older file
    client_id: str | None = None
    api_key: str | None = None


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _read(data_dir: Path) -> dict[str, Any]:
    path = data_dir / FILE_NAME
    if not path.exists():
        return {}
    stored: dict[str, Any] = orjson.loads(path.read_bytes())
    return stored


def _write(data_dir: Path, stored: dict[str, Any]) -> None:
    """Owner-only from the first byte: the file is created 0600, never chmod-ed later."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / FILE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(orjson.dumps(stored, option=orjson.OPT_INDENT_2))


def _secrets(stored: dict[str, Any]) -> LocalSecrets:
    return LocalSecrets(
        stored["adminToken"],
        stored["webhookSecret"],
        stored.get("redisPassword", ""),
        stored.get("defaultClientId") or None,
        stored.get("apiKey") or None,
    )


def load(data_dir: Path) -> LocalSecrets | None:
    """The data dir's secrets, or None while `errand up` has not generated them."""
    stored = _read(data_dir)
    if not stored.get("adminToken") or not stored.get("webhookSecret"):
        return None
    return _secrets(stored)


def load_or_create(data_dir: Path) -> LocalSecrets:
    """The data dir's secrets; the admin token, webhook secret and Valkey password are
    created on first use (and filled in for an older file)."""
    stored = _read(data_dir)
    generators: dict[str, Callable[[], str]] = {
        "adminToken": lambda: secrets.token_urlsafe(24),
        "webhookSecret": new_webhook_secret,
        "redisPassword": lambda: secrets.token_urlsafe(32),
    }
    missing = [name for name in generators if not stored.get(name)]
    for name in missing:
        stored[name] = generators[name]()
    if missing:
        _write(data_dir, stored)
    return _secrets(stored)


def save_api_key(data_dir: Path, client_id: str, api_key: str) -> None:
    """Keep the `default` client's id and key with the other secrets."""
    stored = _read(data_dir)
    stored["defaultClientId"] = client_id
    stored["apiKey"] = api_key
    _write(data_dir, stored)
