"""What Client and AsyncClient share: settings, headers, and turning a Request into httpx's."""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

import httpx

from errand.client._protocol import Request, RetryPolicy, Session

H = TypeVar("H", httpx.Client, httpx.AsyncClient)

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
USER_AGENT = "errand-client/2"


class ClientBase(Generic[H]):
    """The settings both clients take. `api_key` is sent as `Authorization: Bearer`
    and never shown in a repr, a log line or an exception."""

    _http_class: ClassVar[type[Any]]

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: str | None = None,
        timeout_s: float = 10.0,
        max_retries: int = 3,
        retry: RetryPolicy | None = None,
        event_reconnects: int = 5,
    ) -> None:
        """`retry` overrides `max_retries` with a whole policy; `max_retries=0` disables
        retries; `event_reconnects` bounds the resumptions of one events() stream in a
        row."""
        headers = {"User-Agent": USER_AGENT}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key}"
        self.base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s
        self._session = Session(retry or RetryPolicy(max_retries=max_retries), event_reconnects)
        self._http: H = self._http_class(base_url=self.base_url, headers=headers, timeout=timeout_s)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def _build(self, request: Request) -> httpx.Request:
        timeout = httpx.Timeout(self._timeout_s)
        if request.read_timeout_s is not None:
            timeout = httpx.Timeout(self._timeout_s, read=request.read_timeout_s)
        return self._http.build_request(
            request.method,
            request.path,
            params=request.params,
            json=request.json,
            headers=request.headers,
            timeout=timeout,
        )
