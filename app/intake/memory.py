"""An upload whose bytes are already in memory (the MCP `upload_document` tool) as the request the
receiver reads: the same multipart body a client would send, so it takes exactly the path of
`POST /upload` (streaming parse, type sniffing, size limits, dedup, all or nothing)."""

import json
import mimetypes
from typing import Any

from starlette.requests import Request
from starlette.types import Message
from urllib3 import encode_multipart_formdata


def upload_request(filename: str, content: bytes, metadata: dict[str, Any] | None, request_id: str | None) -> Request:
    """A `POST /upload` request carrying one file (and its `metadata` part), ready for a Receiver."""
    declared = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    fields: list[tuple[str, Any]] = [("files", (filename, content, declared))]
    if metadata is not None:
        fields.append(("metadata", json.dumps(metadata)))
    body, content_type = encode_multipart_formdata(fields)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/upload",
        "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())],
        "state": {"request_id": request_id},
    }
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)
