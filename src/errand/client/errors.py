"""The exceptions the errand client raises, one class per way a call can fail.

```
ErrandClientError                 anything this client raises
├── TransportError                no HTTP answer: connection refused or dropped, timeout
├── WaitTimeout                   wait() ran out of time; `.last` is the job as last seen
├── EventStreamLost               events() could not reconnect within its retries
└── ProblemError                  the server answered with a problem document (`.problem`)
    ├── BadRequest                400: not JSON, not an object, nested too deep
    ├── Unauthorized              401: missing, unknown or revoked API key
    ├── Forbidden                 403
    ├── NotFound                  404: unknown job or schedule (or another client's)
    ├── Conflict                  409: `.job_status` (e.g. cancel of a finished job)
    ├── PayloadTooLarge           413
    ├── UnsupportedMediaType      415
    ├── ValidationFailed          422: `.errors`, one FieldError per broken rule
    ├── RateLimited               429: `.retry_after` (seconds)
    └── ServiceUnavailable        503: `.retry_after` (seconds)
```

No message or repr ever contains the API key: only the problem document the
server sent, which never echoes it.
"""

from __future__ import annotations

from errand.client.models import FieldError, JobView, Problem


class ErrandClientError(Exception):
    """Base class of every exception the errand client raises."""


class TransportError(ErrandClientError):
    """No HTTP answer (connection refused or dropped, timeout), after any retries."""


class WaitTimeout(ErrandClientError):
    """`wait()` reached its timeout before the job was final; `last` is the last view."""

    def __init__(self, job_id: str, timeout_s: float, last: JobView) -> None:
        super().__init__(f"job {job_id} still {last.status} after {timeout_s:g} s")
        self.last = last


class EventStreamLost(TransportError):
    """`events()` lost its stream and could not resume it within its reconnect budget."""


class ProblemError(ErrandClientError):
    """The server refused the request; `problem` is its RFC 9457 problem document."""

    def __init__(self, problem: Problem, retry_after: float | None = None) -> None:
        super().__init__(f"{problem.status} {problem.title}: {problem.detail}")
        self.problem = problem
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        return self.problem.status


class BadRequest(ProblemError):
    """400: the body is not valid UTF-8 JSON, not an object, or nested too deep."""


class Unauthorized(ProblemError):
    """401: the API key is missing, malformed, unknown or revoked."""


class Forbidden(ProblemError):
    """403."""


class NotFound(ProblemError):
    """404: unknown (or another client's) job or schedule."""


class Conflict(ProblemError):
    """409: the job's state does not allow it; `job_status` is that state, when given."""

    @property
    def job_status(self) -> str | None:
        return self.problem.job_status


class PayloadTooLarge(ProblemError):
    """413: the body is over the server's limit."""


class UnsupportedMediaType(ProblemError):
    """415: the body was not sent as JSON."""


class ValidationFailed(ProblemError):
    """422: a well-formed body that breaks the rules; `errors` says which fields."""

    @property
    def errors(self) -> list[FieldError]:
        return list(self.problem.errors or [])


class RateLimited(ProblemError):
    """429: over the rate limit or the per-recipient cap; retry after `retry_after` s."""


class ServiceUnavailable(ProblemError):
    """503: the service cannot take it now (queue full, Redis down); see `retry_after`."""


ERRORS_BY_STATUS: dict[int, type[ProblemError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationFailed,
    429: RateLimited,
    503: ServiceUnavailable,
}


def problem_error(problem: Problem, retry_after: float | None = None) -> ProblemError:
    """The exception for a problem document: its status's class, else ProblemError."""
    return ERRORS_BY_STATUS.get(problem.status, ProblemError)(problem, retry_after)
