"""The gate of the client routes: who is calling (API key), and may they (rate limit).

`answer_for_client` is the one way a request reaches a client route's handler, on the
hot path and through FastAPI (`ClientRoute`): it authenticates from the raw ASGI
headers, takes a token from the client's bucket, runs the handler, maps any error
with the one error mapper, and puts the RateLimit-* headers on whatever answer
results (401s excepted: nobody was counted).

Resolved keys are cached per process for `KEY_CACHE_S`: one Redis call per key per
second at most (concurrent requests with the same key share it), and a revoked key
is refused by every process within that second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from errand.access.clients import ClientStore, KeyOwner, LimitOverrides, RateLimit
from errand.access.limits import Limits
from errand.api.caller import SCOPE_KEY, Caller
from errand.api.http.problems import error_response
from errand.errors import RateLimited, Unauthorized
from errand.keys import ANONYMOUS_CLIENT
from errand.settings import AuthMode, Settings

KEY_CACHE_S = 1.0
KEY_CACHE_MAX = 10_000  # distinct keys cached at once; past it the cache starts over
_AUTHORIZATION = b"authorization"
_BEARER = b"bearer "


class Gate:
    """Authentication and the rate limit of one API process."""

    def __init__(self, settings: Settings, store: ClientStore, limits: Limits) -> None:
        self.settings = settings
        self.store = store
        self.limits = limits
        self._cache: dict[bytes, tuple[float, Caller | None]] = {}
        self._resolving: dict[bytes, asyncio.Future[Caller | None]] = {}
        self._anonymous = self.caller_for(ANONYMOUS_CLIENT, LimitOverrides())

    def caller_for(self, client_id: str, overrides: LimitOverrides) -> Caller:
        """The caller of `client_id`: its own limits where it has them, else the server's."""
        s = self.settings
        rate = overrides.rate or RateLimit(s.rate_limit_per_second, s.rate_limit_burst)
        cap = overrides.notify_per_user_per_hour
        return Caller(client_id, rate, s.notify_per_user_per_hour if cap is None else cap)

    async def authenticate(self, headers: Iterable[tuple[bytes, bytes]]) -> Caller:
        """The caller a request's `Authorization: Bearer <apiKey>` names.

        Raises Unauthorized for a missing, malformed, unknown or revoked key (the admin
        token is none of errand's keys). With `ERRAND_AUTH=none`, everyone is anonymous.
        """
        if self.settings.auth is AuthMode.NONE:
            return self._anonymous
        value = _authorization(headers)
        if value is None or value[:7].lower() != _BEARER or not value[7:].strip():
            raise Unauthorized("send your API key as 'Authorization: Bearer <apiKey>'")
        cached = self._cache.get(value)
        if cached is not None and cached[0] > time.monotonic():
            caller = cached[1]
        else:
            caller = await asyncio.shield(self._resolving_of(value))
        if caller is None:
            raise Unauthorized("the API key is not valid: unknown, revoked or malformed")
        return caller

    def _resolving_of(self, value: bytes) -> asyncio.Future[Caller | None]:
        """The lookup of an Authorization value in flight, or a new one that caches its
        answer (started now: a revocation before it is seen)."""
        resolving = self._resolving.get(value)
        if resolving is None:
            resolving = asyncio.ensure_future(self._resolve(value))
            self._resolving[value] = resolving
            resolving.add_done_callback(lambda done: self._resolved(value, done))
        return resolving

    def _resolved(self, value: bytes, done: asyncio.Future[Caller | None]) -> None:
        self._resolving.pop(value, None)
        if not done.cancelled():
            done.exception()  # retrieved here too, in case every request waiting left

    async def _resolve(self, value: bytes) -> Caller | None:
        started = time.monotonic()
        owner: KeyOwner | None = await self.store.resolve(value[7:].strip().decode("latin-1"))
        caller = None if owner is None else self.caller_for(owner.client_id, owner.overrides)
        if len(self._cache) >= KEY_CACHE_MAX:
            self._cache.clear()
        self._cache[value] = (started + KEY_CACHE_S, caller)
        return caller


def _authorization(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == _AUTHORIZATION:
            return value
    return None


async def answer_for_client(
    gate: Gate,
    headers: Iterable[tuple[bytes, bytes]],
    where: str,
    answer: Callable[[Caller], Awaitable[Response]],
) -> Response:
    """Authenticate, count the request against its client's bucket, and `answer` it.

    Every error becomes its problem document (401, 429, the handler's own); every
    answer but a 401 carries the RateLimit-* headers of the client's bucket.
    """
    quota = None
    try:
        caller = await gate.authenticate(headers)
        quota = await gate.limits.take(caller.client_id, caller.rate)
        if quota is not None and not quota.taken:
            raise RateLimited(
                f"over the rate limit of {caller.rate.per_second:g} requests a second "
                f"(bursts up to {caller.rate.burst})",
                quota.retry_after_s,
            )
        response = await answer(caller)
    except Exception as err:
        response = error_response(err, where)
    if quota is not None:
        response.headers.update(quota.headers())
    return response


class ClientRoute(APIRoute):
    """A route of the client API (`/reports`, `/notifications`, `/jobs`): the gate runs
    before FastAPI reads a parameter, and `current_caller` hands its caller to the
    handler. Every error, expected or not, is answered by the one error mapper."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def gated(request: Request) -> Response:
            async def run(caller: Caller) -> Response:
                request.scope[SCOPE_KEY] = caller
                return await handler(request)

            gate: Gate = request.app.state.services.gate
            where = f"{request.method} {self.path}"
            return await answer_for_client(gate, request.scope["headers"], where, run)

        return gated
