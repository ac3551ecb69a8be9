"""What a processor sees of a running job, and the processor's own signature.

The engine hands processors BullMQ `Job` objects (bullmq's, or the fast engine's
FastJob); processors use only these members and never import bullmq. A processor
signals the outcomes BullMQ needs with errand's errors, which the engine converts:
`PermanentFailure` (skip the remaining attempts) and `JobDeferred` (the processor
moved the job back to delayed itself; no attempt is spent).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol


class RunningJob(Protocol):
    """The members of a BullMQ job that errand's processors use."""

    id: Any
    data: dict[str, Any]
    opts: dict[str, Any]
    attemptsMade: int
    attemptsStarted: int
    discarded: bool

    async def updateProgress(self, progress: int) -> Any: ...

    async def moveToDelayed(self, timestamp: int, token: str | None = None) -> Any: ...


Processor = Callable[[Any, str], Awaitable[Any]]
