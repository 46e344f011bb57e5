"""Log lines: secrets scrubbed from every line and exception, and GELF over TCP."""

import io
import json
import logging
import socket

from app.observability.logs import ContextFilter, JsonFormatter, redact
from app.settings import Settings

SECRET_MARK = "s3cretPassw0rd"


def test_redact() -> None:
    text = redact(
        f"mongodb://docproc:{SECRET_MARK}@mongo:27017/docproc redis://:{SECRET_MARK}@valkey:6379/0 "
        f"Authorization: Bearer {SECRET_MARK} dp_0123456789ab_{SECRET_MARK}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    )
    assert SECRET_MARK not in text
    assert "mongodb://docproc:***@mongo:27017" in text and "dp_0123456789ab_***" in text
    assert redact("postgresql://postgres@127.0.0.1:5432/postgres") == "postgresql://postgres@127.0.0.1:5432/postgres"


def test_log_lines_never_carry_secrets() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter("api"))
    logger = logging.getLogger("tests.secrets")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("cannot reach %s", f"postgresql://docproc:{SECRET_MARK}@db:5432/docproc")
        try:
            raise ConnectionError(f"redis://:{SECRET_MARK}@valkey:6379/0 refused")
        except ConnectionError:
            logger.exception("queue down")
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2 and SECRET_MARK not in stream.getvalue()
    assert "docproc:***@db" in lines[0]["message"] and "ConnectionError" in lines[1]["exc_info"]


def test_gelf_over_tcp() -> None:
    import logging

    from app.observability.logs import ContextFilter, gelf_handler, log_context

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    settings = Settings(_env_file=None, gelf_host="127.0.0.1", gelf_port=server.getsockname()[1], gelf_protocol="tcp")
    handler = gelf_handler(settings, "test")
    handler.addFilter(ContextFilter("test"))
    logger = logging.getLogger("obs.gelf.tcp")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with log_context(request_id="rid-tcp", file_id="f-1"):
            logger.warning("over tcp %d", 7, extra={"stage": "embed", "duration_ms": 1.5})
        conn, _ = server.accept()
        conn.settimeout(10)
        data = b""
        while not data.endswith(b"\x00"):
            data += conn.recv(65536)
        conn.close()
    finally:
        logger.removeHandler(handler)
        handler.close()
        server.close()
    message = json.loads(data[:-1])
    assert message["short_message"] == "over tcp 7" and message["level"] == 4
    assert message["_request_id"] == "rid-tcp" and message["_file_id"] == "f-1" and message["_service"] == "test"
    assert message["_stage"] == "embed" and message["_duration_ms"] == 1.5 and message["_logger"] == "obs.gelf.tcp"
