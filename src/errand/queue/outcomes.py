"""errand's own final outcomes of a job, carried in BullMQ's return value.

BullMQ knows two final states, completed and failed. A canceled or expired job is
a BullMQ `completed` job whose return value is `{"errand": {"outcome": ..., "reason":
...}}`: it is never in the failed set (so never dead-lettered), it keeps the
completed retention, and Node BullMQ tools show it as completed with that value.
The job-hash decoder (`snapshot.py`) maps the marker to the public status.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

MARKER = "errand"


class Outcome(StrEnum):
    CANCELED = "canceled"
    EXPIRED = "expired"


def outcome_value(outcome: Outcome, reason: str) -> dict[str, Any]:
    """The return value that ends a job with `outcome` (what a processor returns)."""
    return {MARKER: {"outcome": str(outcome), "reason": reason}}


def outcome_of(returnvalue: Any) -> tuple[Outcome, str] | None:
    """The (outcome, reason) a decoded return value carries, or None for an ordinary result."""
    if not isinstance(returnvalue, dict):
        return None
    marker = returnvalue.get(MARKER)
    if not isinstance(marker, dict):
        return None
    try:
        outcome = Outcome(str(marker.get("outcome")))
    except ValueError:
        return None
    return outcome, str(marker.get("reason") or outcome)
