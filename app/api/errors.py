"""HTTP errors with a stable code: `{"detail": {"code": ..., "message": ...}}`."""

from fastapi import HTTPException

from app.status import MESSAGES, ErrorCode


def http_error(
    status: int, code: ErrorCode | str, message: str | None = None, headers: dict[str, str] | None = None
) -> HTTPException:
    text = message or (MESSAGES.get(code) if isinstance(code, ErrorCode) else None) or str(code)
    return HTTPException(status_code=status, detail={"code": str(code), "message": text}, headers=headers)
