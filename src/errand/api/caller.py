"""Who is calling: the client a request acts for, whose jobs it may see and create."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from errand.keys import ANONYMOUS_CLIENT


@dataclass(frozen=True, slots=True)
class Caller:
    """The client of one request. Every job it creates records `client_id`, and it sees
    only jobs that carry its own."""

    client_id: str


ANONYMOUS = Caller(ANONYMOUS_CLIENT)


async def current_caller(request: Request) -> Caller:
    """The caller of a FastAPI route (`async`: no thread-pool hop per request)."""
    return ANONYMOUS
