"""A minimal Server-Sent Events reader over httpx, for tests and the benchmark."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx


@dataclass
class SseEvent:
    event: str
    data: str
    id: str | None


async def read_events(response: httpx.Response) -> AsyncIterator[SseEvent | str]:
    """Yield events, and comment lines (heartbeats) as plain strings."""
    event, data, event_id = "message", [], None
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield SseEvent(event, "\n".join(data), event_id)
            event, data, event_id = "message", [], None
        elif line.startswith(":"):
            yield line
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                event_id = value
