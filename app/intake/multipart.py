"""Streaming multipart/form-data: parts and their bytes as they arrive.

Starlette's `request.form()` spools every file to a temporary file before the
handler runs, so a size limit could only be checked after the whole body was
read. Here python-multipart's push parser turns the request stream into events
that the upload handler consumes one at a time, writing each chunk on to
storage as it comes.
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass

from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import ClientDisconnect, Request


class MultipartError(ValueError):
    pass


class TruncatedBody(MultipartError):
    """The body ended before the closing boundary: a killed client, or a proxy that cut it."""


@dataclass
class PartStart:
    name: str
    filename: str | None
    content_type: str


@dataclass
class PartData:
    data: bytes


@dataclass
class PartEnd:
    pass


Event = PartStart | PartData | PartEnd


def boundary_of(content_type: str) -> bytes:
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise MultipartError("expected a multipart/form-data body with a boundary")
    return params[b"boundary"]


async def events(request: Request) -> AsyncIterator[Event]:
    boundary = boundary_of(request.headers.get("content-type", ""))
    pending: list[Event] = []
    headers: dict[str, bytes] = {}  # raw values: filenames arrive as UTF-8 bytes
    field_name: list[bytes] = []
    field_value: list[bytes] = []

    def on_part_begin() -> None:
        headers.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        field_name.append(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        field_value.append(data[start:end])

    def on_header_end() -> None:
        headers[b"".join(field_name).decode("latin-1").lower()] = b"".join(field_value)
        field_name.clear()
        field_value.clear()

    def on_headers_finished() -> None:
        _, params = parse_options_header(headers.get("content-disposition", b""))
        filename = params.get(b"filename")
        pending.append(
            PartStart(
                name=params.get(b"name", b"").decode("utf-8", "replace"),
                filename=filename.decode("utf-8", "replace") if filename is not None else None,
                content_type=headers.get("content-type", b"application/octet-stream").decode("utf-8", "replace"),
            )
        )

    def on_part_data(data: bytes, start: int, end: int) -> None:
        pending.append(PartData(bytes(data[start:end])))

    def on_part_end() -> None:
        pending.append(PartEnd())

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        async for chunk in request.stream():
            if chunk:
                parser.write(chunk)
            for ev in pending:
                yield ev
            pending.clear()
        parser.finalize()
        if parser.state != MultipartState.END:
            raise TruncatedBody("the body ended before the closing multipart boundary; nothing was kept")
    except MultipartError:
        raise
    except ClientDisconnect as exc:
        raise TruncatedBody("the client went away before the body ended; nothing was kept") from exc
    except Exception as exc:
        if exc.__class__.__module__.startswith("python_multipart"):
            raise MultipartError(f"malformed multipart body: {exc}") from exc
        raise
    for ev in pending:
        yield ev
