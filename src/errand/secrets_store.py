"""Secrets `errand up` generates once and keeps in the data directory (mode 0600): the admin
token, the webhook secret and the embedded Valkey's password."""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

FILE_NAME = "secrets.json"


@dataclass(frozen=True)
class LocalSecrets:
    admin_token: str
    webhook_secret: str
    redis_password: str = ""  # the embedded Valkey's `requirepass`; empty in an older file


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def load(data_dir: Path) -> LocalSecrets | None:
    """The data dir's secrets, or None while `errand up` has not generated them."""
    path = data_dir / FILE_NAME
    if not path.exists():
        return None
    stored: dict[str, str] = orjson.loads(path.read_bytes())
    if not stored.get("adminToken") or not stored.get("webhookSecret"):
        return None
    return LocalSecrets(
        stored["adminToken"], stored["webhookSecret"], stored.get("redisPassword", "")
    )


def load_or_create(data_dir: Path) -> LocalSecrets:
    """The data dir's secrets, created on first use."""
    path = data_dir / FILE_NAME
    stored: dict[str, str] = {}
    if path.exists():
        stored = orjson.loads(path.read_bytes())
    generators: dict[str, Callable[[], str]] = {
        "adminToken": lambda: secrets.token_urlsafe(24),
        "webhookSecret": new_webhook_secret,
        "redisPassword": lambda: secrets.token_urlsafe(32),
    }
    missing = [name for name in generators if not stored.get(name)]
    for name in missing:
        stored[name] = generators[name]()
    if missing:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(orjson.dumps(stored, option=orjson.OPT_INDENT_2))
    return LocalSecrets(stored["adminToken"], stored["webhookSecret"], stored["redisPassword"])
