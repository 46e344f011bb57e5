"""Fixtures of the tests that use the real local servers: one stack of servers and one API for the
whole session (modules that kill or stop servers start their own), and moto's S3 for a module."""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.moto import start_moto
from tests.fixtures.stack import Stack, stack_dir, start_api, start_servers


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    stack = start_servers(stack_dir("session"))
    # the in-process worker (tests/fixtures/worker.py) reads the same settings as the API
    os.environ.update(stack.env, MAX_UPLOAD_BYTES=str(2 * 1024 * 1024), MAX_FILES_PER_REQUEST="8")
    stack.env.update(MAX_UPLOAD_BYTES=str(2 * 1024 * 1024), MAX_FILES_PER_REQUEST="8")
    from app.settings import get_settings

    get_settings.cache_clear()
    yield stack
    stack.stop_all()
    shutil.rmtree(stack.root, ignore_errors=True)


@pytest.fixture(scope="session")
def api_url(stack: Stack) -> Iterator[str]:
    proc, url = start_api(stack)
    yield url
    proc.stop()


@pytest.fixture(scope="session")
def auth_headers(stack: Stack) -> dict[str, str]:
    """Tenant "default", every scope."""
    return stack.auth()


@pytest.fixture
def client(api_url: str, stack: Stack) -> Iterator[httpx.Client]:
    """The session API, authenticated as tenant "default" with every scope."""
    with stack.client(api_url) as c:
        yield c


@pytest.fixture(scope="session")
def data_dir(stack: Stack) -> Path:
    return Path(stack.env["DATA_DIR"])


@pytest.fixture(scope="module")
def s3_env(stack: Stack) -> Iterator[dict[str, str]]:
    """moto's S3 server for the module, and the environment of an API that uses it."""
    proc, env = start_moto(stack, "moto")
    yield env
    proc.stop()
