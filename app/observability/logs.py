"""Logging for every process (API, worker, watchdog): one JSON object per line, or text.

`setup_logging(settings, service)` installs one handler on the root logger that writes
to stderr, JSON (python-json-logger) when `LOG_FORMAT=json`, the classic text line
when `LOG_FORMAT=text`; with `GELF_HOST` set, a second handler sends every record to
Graylog in GELF (pygelf) over UDP or TCP (`GELF_PROTOCOL`). Calling it again replaces
what it installed, and leaves other handlers (pytest's, for instance) alone.

Every record carries `service`, and the ids of what it is about when known: the
request id of the HTTP request being served (or of the request that queued the job
being run) and the file id of the job being run. They come from context variables,
set by the API's middleware (app/api/middleware.py) and by the worker around each job
(worker/metrics.py `JobObserver`), so a log call does not have to pass them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

if TYPE_CHECKING:
    from app.settings import Settings

REQUEST_ID_HEADER = "X-Request-ID"
# a client's X-Request-ID is kept when it looks like an id; anything else is replaced by a new one
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
file_id_var: ContextVar[str | None] = ContextVar("file_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# attributes every LogRecord has: anything else on a record is an extra field worth sending
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_NOT_FIELDS = ("color_message", "taskName", "_redacted")  # uvicorn's coloured message; asyncio's task name; ours


# secrets that must never reach a log line or an error body: passwords in URLs
# (mongodb://user:pw@host), API keys (dp_<id>_<secret>) and bearer tokens
_URL_PASSWORD = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")
_API_KEY = re.compile(r"\b(dp_[0-9a-f]{12})_[A-Za-z0-9_-]+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',]+")


def redact(text: str) -> str:
    """`text` with URL passwords, API key secrets and bearer tokens replaced by `***`."""
    if not text:
        return text
    text = _URL_PASSWORD.sub(r"\g<scheme>\g<user>:***@", text)
    text = _API_KEY.sub(r"\1_***", text)
    return _BEARER.sub(r"\1***", text)


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(value: str | None) -> str:
    """The client's request id when it is a sane one, else a fresh one."""
    if value and _REQUEST_ID_OK.match(value):
        return value
    return new_request_id()


def current_request_id() -> str | None:
    return request_id_var.get()


@contextlib.contextmanager
def log_context(request_id: str | None = None, file_id: str | None = None) -> Iterator[None]:
    """Records logged inside carry these ids (those given; the others stay as they were)."""
    tokens = []
    if request_id is not None:
        tokens.append((request_id_var, request_id_var.set(request_id)))
    if file_id is not None:
        tokens.append((file_id_var, file_id_var.set(file_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextFilter(logging.Filter):
    """Adds `service`, and `request_id` / `file_id` from the context when the record has none."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        _scrub(record)
        if not hasattr(record, "service"):
            record.service = self.service
        if getattr(record, "request_id", None) is None and (rid := request_id_var.get()) is not None:
            record.request_id = rid
        if getattr(record, "file_id", None) is None and (fid := file_id_var.get()) is not None:
            record.file_id = fid
        return True


def _scrub(record: logging.LogRecord) -> None:
    """Redact the record's message and traceback in place (once), whatever handler formats it."""
    if getattr(record, "_redacted", False):
        return
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string: leave it to logging's own error report
        return
    record.msg, record.args = redact(message), None
    if record.exc_info and record.exc_info[0] is not None:
        import traceback

        record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        record.exc_info = None  # formatters use exc_text; the raw exception could hold a secret
    record._redacted = True


class JsonFormatter(_BaseJsonFormatter):
    """`{"time", "level", "logger", "message", ...extra fields}`; time in UTC, ISO 8601 with milliseconds."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(
            ["asctime", "levelname", "name", "message"],
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            json_ensure_ascii=False,
            reserved_attrs=[*RESERVED_ATTRS, *_NOT_FIELDS],
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record carries beyond logging's own (request_id, route, file_id, ...)."""
    return {
        k: v
        for k, v in record.__dict__.items()
        if k not in _STANDARD_ATTRS and k not in _NOT_FIELDS and not k.startswith("_") and v is not None
    }


def _gelf_value(value: Any) -> str | int | float:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float | str):
        return value
    return json.dumps(value, default=str)  # lists (file_ids) and the like: GELF fields are strings or numbers


def gelf_handler(settings: Settings, service: str) -> logging.Handler:
    """A pygelf handler (UDP: compressed, chunked datagrams; TCP: null-terminated frames)."""
    from pygelf import GelfTcpHandler, GelfUdpHandler, gelf

    base = GelfTcpHandler if settings.gelf_protocol == "tcp" else GelfUdpHandler

    class Handler(base):  # type: ignore[misc, valid-type]
        def convert_record_to_gelf(self, record: logging.LogRecord) -> bytes:
            message = gelf.make(record, self.domain, False, self.version, self.additional_fields, {}, False)
            message["_logger"] = record.name
            for key, value in extra_fields(record).items():
                if key != "id":  # `_id` is reserved in GELF
                    message[f"_{key}"] = _gelf_value(value)
            return gelf.pack(message, self.compress, self.json_default)

    handler = Handler(host=settings.gelf_host, port=settings.gelf_port, _facility="docproc")
    return handler


_INSTALLED: list[logging.Handler] = []


def quiet_progress_bars() -> None:
    """No tqdm progress bars (the model's "Loading weights") in a service's log: they are not lines."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()


def setup_logging(settings: Settings, service: str) -> None:
    """Install this process's log handlers on the root logger (replacing ours from an earlier call)."""
    root = logging.getLogger()
    for handler in _INSTALLED:
        root.removeHandler(handler)
        with contextlib.suppress(Exception):
            handler.close()
    _INSTALLED.clear()

    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(JsonFormatter() if settings.log_format == "json" else logging.Formatter(TEXT_FORMAT))
    handlers: list[logging.Handler] = [console]
    if settings.gelf_host:
        handlers.append(gelf_handler(settings, service))
    for handler in handlers:
        handler.addFilter(ContextFilter(service))
        root.addHandler(handler)
        _INSTALLED.append(handler)
    root.setLevel(settings.log_level.upper())
    logging.captureWarnings(True)  # Python warnings become records too, not stray stderr text
    quiet_progress_bars()

    # uvicorn's loggers have handlers of their own: send them through ours instead. Its access
    # log is off: the request middleware writes one richer line per request.
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
