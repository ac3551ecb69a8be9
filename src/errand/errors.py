"""Domain errors, raised by services and turned into problem documents by the API.

    ErrandError
    ├── NotFound            unknown or expired job
    ├── Conflict            the job is not in the state the operation needs
    │   └── IdempotencyInProgress
    ├── InvalidInput        a well-formed request that breaks a rule (422)
    │   └── IdempotencyMismatch
    ├── MalformedBody       not UTF-8 JSON, or not a JSON object (400)
    ├── BodyTooLarge        over the size limit (413)
    ├── UnsupportedMediaType  a body that is not declared JSON (415)
    ├── Unauthorized        no API key, or not a live one (401)
    ├── RateLimited         the client's token bucket is empty (429)
    │   └── RecipientLimited    the per-recipient notification cap is reached (429)
    └── QueueUnavailable    Redis does not answer (503)
        └── QueueFull           one more job would put the queue over its depth cap

And two outcomes of a job attempt, raised by processors and converted by the engine:

    PermanentFailure        retrying cannot fix it: skip the remaining attempts
    JobDeferred             the processor put the job back itself; no attempt spent
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class ErrandError(Exception):
    """Base of every error errand raises on purpose."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(ErrandError):
    pass


@dataclass
class FieldError:
    field: str
    message: str


class Conflict(ErrandError):
    def __init__(self, detail: str, job_status: str | None = None) -> None:
        super().__init__(detail)
        self.job_status = job_status


class IdempotencyInProgress(Conflict):
    pass


class InvalidInput(ErrandError):
    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []


class IdempotencyMismatch(InvalidInput):
    pass


class MalformedBody(ErrandError):
    pass


class BodyTooLarge(ErrandError):
    pass


class UnsupportedMediaType(ErrandError):
    pass


class Unauthorized(ErrandError):
    pass


class RateLimited(ErrandError):
    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class RecipientLimited(RateLimited):
    pass


class QueueUnavailable(ErrandError):
    pass


class QueueFull(QueueUnavailable):
    pass


@dataclass
class PermanentFailure(Exception):
    """A failure that retrying cannot fix (e.g. an SMTP 5xx): skip the remaining attempts."""

    reason: str
    details: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.reason


class JobDeferred(Exception):
    """The processor moved its job back to delayed itself (no failure, no attempt spent)."""


# Where a failure happened, as exception messages say it: a socket address tuple,
# [IPv6]:port, IPv4[:port], host:port. Public error fields say what failed, not where.
_ADDRESSES = re.compile(
    r"\('[^']*', \d+(?:, \d+, \d+)?\)"
    r"|\[[0-9A-Fa-f:.%]+\](?::\d+)?"
    r"|\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"
    r"|(?<![\w.-])[A-Za-z][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)*:\d{2,5}\b"
)


def without_addresses(text: str) -> str:
    """`text` with every network address in it (IP, host:port) replaced by `<address>`."""
    return _ADDRESSES.sub("<address>", text)
