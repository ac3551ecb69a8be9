"""Who is calling: the client a request acts for, whose jobs it may see and create."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

from errand.access.clients import RateLimit
from errand.keys import ANONYMOUS_CLIENT

NO_RATE_LIMIT = RateLimit(0, 0)
SCOPE_KEY = "errand.caller"
"""Where `api.gate` leaves the authenticated caller in an ASGI scope."""


@dataclass(frozen=True, slots=True)
class Caller:
    """The client of one request and its limits. Every job it creates records `client_id`,
    and it sees only jobs that carry its own."""

    client_id: str
    rate: RateLimit = NO_RATE_LIMIT
    notify_per_user_per_hour: int = 0


ANONYMOUS = Caller(ANONYMOUS_CLIENT)


async def current_caller(request: Request) -> Caller:
    """The caller of a client route (`async`: no thread-pool hop per request).

    Raises LookupError on a route that did not authenticate (a `ClientRoute` does):
    a request nobody authenticated must never act for anyone.
    """
    caller = request.scope.get(SCOPE_KEY)
    if not isinstance(caller, Caller):
        raise LookupError(f"{request.url.path} is not a client route: nobody authenticated it")
    return caller


CallerDep = Annotated[Caller, Depends(current_caller)]
"""A route parameter that receives the request's `Caller`."""
