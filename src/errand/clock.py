"""The one clock seam: wall time in ms and ISO 8601 rendering."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso_ms(epoch_ms: int | None) -> str | None:
    """ISO 8601 UTC with milliseconds, or None for a missing timestamp."""
    if not epoch_ms:
        return None
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
