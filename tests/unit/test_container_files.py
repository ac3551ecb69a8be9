"""The Containerfile and compose.yaml name only settings that exist and commands errand has."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from errand.cli import app
from errand.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SETTING = re.compile(r"\bERRAND_([A-Z0-9_]+)\b")
# Compose interpolation knobs (not read by errand itself).
COMPOSE_ONLY = {"IMAGE", "API_REPLICAS", "WORKER_REPLICAS", "API_PORTS"}


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def test_every_errand_variable_in_the_container_files_is_a_setting() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    for name in ("Containerfile", "compose.yaml", "compose.env.example"):
        used = set(SETTING.findall((ROOT / name).read_text())) - COMPOSE_ONLY
        assert used <= fields, f"{name}: no such setting: {sorted(used - fields)}"


def test_compose_runs_api_and_worker_against_its_valkey() -> None:
    services = _compose()["services"]
    commands = {c.name for c in app.registered_commands if c.name} | {
        c.callback.__name__ for c in app.registered_commands if c.callback
    }
    for name in ("api", "worker"):
        service = services[name]
        assert service["command"][0] == name and name in commands
        assert service["environment"]["ERRAND_REDIS_URL"] == "redis://valkey:6379/0"
        assert service["depends_on"]["valkey"]["condition"] == "service_healthy"
        assert "replicas" in service["deploy"]
    valkey = services["valkey"]
    assert "--appendonly" in valkey["command"] and "valkey-data:/data" in valkey["volumes"]


def test_the_image_does_not_allow_private_webhooks() -> None:
    """`errand up` allows them for local development unless told; in a container it is told."""
    text = (ROOT / "Containerfile").read_text()
    assert "ERRAND_WEBHOOK_ALLOW_PRIVATE=false" in text
    assert _compose()["x-errand"]["environment"]["ERRAND_WEBHOOK_ALLOW_PRIVATE"] == "false"
