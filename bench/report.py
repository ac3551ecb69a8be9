"""What one benchmark run measured: every figure the tables print and `--json` keeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Report:
    started: str = ""
    machine: str = ""
    load_before: str = ""
    load_after: str = ""
    tool: str = ""
    api_workers: int = 0
    http: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    api_cpu_us: dict[str, float] = field(default_factory=dict)
    valkey_cpu_us: dict[str, float] = field(default_factory=dict)
    drains: list[dict[str, Any]] = field(default_factory=list)
    latency: dict[str, Any] = field(default_factory=dict)
    waiting: list[dict[str, Any]] = field(default_factory=list)
    rss: dict[str, Any] = field(default_factory=dict)
    scheduled: dict[str, Any] = field(default_factory=dict)
    listing: dict[str, Any] = field(default_factory=dict)
    cluster: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
