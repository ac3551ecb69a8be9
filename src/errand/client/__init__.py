"""errand's Python client: `Client` (blocking) and `AsyncClient` (asyncio) for the v2 API.

Runs in the caller's service: it imports nothing from errand's server side, only
httpx, pydantic and the standard library.
"""

from errand.client._async import AsyncClient
from errand.client._protocol import RetryPolicy
from errand.client._sync import Client
from errand.client.errors import (
    BadRequest,
    Conflict,
    ErrandClientError,
    EventStreamLost,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ProblemError,
    RateLimited,
    ServiceUnavailable,
    TransportError,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
    WaitTimeout,
)
from errand.client.models import (
    Accepted,
    BatchItem,
    BatchResult,
    FieldError,
    JobView,
    NotificationRequest,
    NotificationView,
    Problem,
    ReportRequest,
    Schedule,
    WebhookState,
)
from errand.statuses import FINAL_STATUSES, JobStatus

__all__ = [
    "FINAL_STATUSES",
    "Accepted",
    "AsyncClient",
    "BadRequest",
    "BatchItem",
    "BatchResult",
    "Client",
    "Conflict",
    "ErrandClientError",
    "EventStreamLost",
    "FieldError",
    "Forbidden",
    "JobStatus",
    "JobView",
    "NotFound",
    "NotificationRequest",
    "NotificationView",
    "PayloadTooLarge",
    "Problem",
    "ProblemError",
    "RateLimited",
    "ReportRequest",
    "RetryPolicy",
    "Schedule",
    "ServiceUnavailable",
    "TransportError",
    "Unauthorized",
    "UnsupportedMediaType",
    "ValidationFailed",
    "WaitTimeout",
    "WebhookState",
]
