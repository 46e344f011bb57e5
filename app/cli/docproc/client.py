"""The HTTP API as the command line sees it: base URL and key (`DOCPROC_URL`, `DOCPROC_API_KEY`),
errors as `ApiError(status, code, message)`, and waiting as the server's `Retry-After` says."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
RETRYABLE = (429, 503)
MAX_WAIT_S = 120.0  # longest single wait a Retry-After can ask for


class ApiError(Exception):
    """The API refused or failed: its HTTP status, stable code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message
        super().__init__(f"{code}: {message}")


def error_of(response: httpx.Response) -> ApiError:
    """The API's `{"detail": {"code", "message"}}` (or Dify's `{error_code, error_msg}`) as an ApiError."""
    try:
        body = response.json()
    except ValueError:
        return ApiError(
            response.status_code, f"http_{response.status_code}", response.text[:200] or response.reason_phrase
        )
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, dict):
        return ApiError(response.status_code, str(detail.get("code", "error")), str(detail.get("message", "")))
    if isinstance(body, dict) and "error_code" in body:
        return ApiError(response.status_code, str(body["error_code"]), str(body.get("error_msg", "")))
    return ApiError(response.status_code, f"http_{response.status_code}", str(detail or body)[:200])


def retry_after(response: httpx.Response, default: float = 1.0) -> float:
    """Seconds the server asks a client to wait (`Retry-After`, in seconds), within MAX_WAIT_S."""
    try:
        return min(MAX_WAIT_S, max(0.0, float(response.headers.get("retry-after", default))))
    except ValueError:
        return default


@dataclass
class Config:
    url: str = DEFAULT_URL
    key: str | None = None
    timeout: float = 60.0

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def endpoint(self, path: str) -> str:
        return self.url.rstrip("/") + path


class Api:
    """A synchronous client of the API (everything but the bulk upload, which is async)."""

    def __init__(self, config: Config, attempts: int = 5) -> None:
        self.config = config
        self.attempts = attempts
        self.http = httpx.Client(base_url=config.url.rstrip("/"), headers=config.headers(), timeout=config.timeout)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """The response (2xx), after waiting out 429 and 503 as `Retry-After` says; ApiError otherwise."""
        for attempt in range(self.attempts):
            response = self.http.request(method, path, **kw)
            if response.status_code in RETRYABLE and attempt + 1 < self.attempts:
                time.sleep(retry_after(response))
                continue
            if response.is_success:
                return response
            raise error_of(response)
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, **kw: Any) -> Any:
        response = self.request(method, path, **kw)
        return response.json() if response.content else None
