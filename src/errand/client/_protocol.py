"""The client's logic without I/O: operations are generators of steps that a driver runs.

Every operation (submit, wait, events, list_jobs, ...) is written once, as a
generator that yields steps (`Attempt` one HTTP request, `Sleep`, `OpenStream` and
`NextLine` for Server-Sent Events, `Emit` a result to the caller) and receives
their outcomes. `Client` drives them with blocking httpx calls and `AsyncClient`
with awaits, so retries, long-polls and stream resumption exist in one copy.
Transport failures come back as values (an `httpx.TransportError` instance), never
as exceptions thrown into the generator, so each operation decides what they mean.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeAlias, TypeVar

import httpx
from pydantic import ValidationError

from errand.client.errors import TransportError, problem_error
from errand.client.models import Problem

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request, re-sent unchanged (same Idempotency-Key) on each retry."""

    method: str
    path: str
    params: dict[str, str] | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    read_timeout_s: float | None = None
    retryable: bool = True
    retry_statuses: frozenset[int] = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class Attempt:
    """Send `request` once; the reply is an httpx.Response or an httpx.TransportError."""

    request: Request


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class OpenStream:
    """Open a streamed GET (closing any open one); reply as for Attempt, body unread
    unless the status is an error."""

    request: Request


@dataclass(frozen=True, slots=True)
class NextLine:
    """Read the next line of the open stream; reply: str, None at its end, or an
    httpx.TransportError when the connection broke."""


@dataclass(frozen=True, slots=True)
class Emit(Generic[T]):
    """Hand `value` to the caller (a single result, or one item of an iterator)."""

    value: T


Step: TypeAlias = Attempt | Sleep | OpenStream | NextLine
Op: TypeAlias = Generator[Step | Emit[T], Any, None]
"""An operation whose results are of type T (one for a call, many for an iterator)."""
Outcome: TypeAlias = httpx.Response | httpx.TransportError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Which failures are retried and how long to wait; `max_retries=0` disables retries.

    Only idempotent requests are retried (GETs, and submits, which always carry an
    Idempotency-Key), on a transport error or a status the request names (429 and
    503; for a submit also 409, its key's first request still in progress). The wait honours the
    server's `Retry-After`, else backs off exponentially from `backoff_s`; no retry
    starts once `max_total_s` would be exceeded.
    """

    max_retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    max_total_s: float = 60.0

    def delay_s(
        self, request: Request, outcome: Outcome, attempt: int, elapsed_s: float
    ) -> float | None:
        """Seconds to wait before retrying `request` after `outcome`, or None: no retry."""
        if not request.retryable or attempt >= self.max_retries:
            return None
        delay = min(self.backoff_s * 2**attempt, self.max_backoff_s)
        if isinstance(outcome, httpx.Response):
            if outcome.status_code not in request.retry_statuses:
                return None
            delay = retry_after_s(outcome) or delay
        return delay if elapsed_s + delay <= self.max_total_s else None


@dataclass(frozen=True, slots=True)
class Session:
    """What every operation needs from the client that runs it."""

    retry: RetryPolicy
    event_reconnects: int = 5


def retry_after_s(response: httpx.Response) -> float | None:
    """The `Retry-After` header in seconds (delta-seconds or an HTTP date), if any."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def raise_for(outcome: Outcome) -> httpx.Response:
    """The response if it is a success; else the client's exception for it."""
    if isinstance(outcome, httpx.TransportError):
        raise TransportError(f"{type(outcome).__name__}: {outcome}") from outcome
    if outcome.is_success:
        return outcome
    try:
        problem = Problem.model_validate_json(outcome.content)
    except ValidationError:
        text = outcome.text[:500]
        problem = Problem(status=outcome.status_code, title=outcome.reason_phrase, detail=text)
    raise problem_error(problem, retry_after_s(outcome))


def send(session: Session, request: Request) -> Generator[Step, Any, httpx.Response]:
    """One call under the retry policy (use with `yield from`); raises as `raise_for`."""
    started = time.monotonic()
    attempt = 0
    while True:
        outcome: Outcome = yield Attempt(request)
        delay = session.retry.delay_s(request, outcome, attempt, time.monotonic() - started)
        if delay is None:
            return raise_for(outcome)
        yield Sleep(delay)
        attempt += 1


def fetch(session: Session, request: Request, parse: Callable[[bytes], T]) -> Op[T]:
    """The common operation: one call, its body parsed, emitted."""
    response = yield from send(session, request)
    yield Emit(parse(response.content))


@dataclass
class SseEvent:
    event: str = "message"
    data: list[str] = field(default_factory=list)
    id: str | None = None


@dataclass
class SseParser:
    """Server-Sent Events, line by line: `feed` returns an event when a blank line ends one."""

    last_event_id: str | None = None
    _pending: SseEvent = field(default_factory=SseEvent)

    def feed(self, line: str) -> SseEvent | None:
        if line == "":
            event, self._pending = self._pending, SseEvent()
            if event.id is not None:
                self.last_event_id = event.id
            return event if event.data else None
        if line.startswith(":"):
            return None  # a comment: the server's heartbeat
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._pending.event = value
        elif name == "data":
            self._pending.data.append(value)
        elif name == "id" and "\0" not in value:
            self._pending.id = value
        return None


def advance(op: Op[T], reply: Any) -> Step | Emit[T] | None:
    """The operation's next step after `reply`, or None once it has finished."""
    try:
        return op.send(reply)
    except StopIteration:
        return None
