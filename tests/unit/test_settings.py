"""The settings class: limits on by default where there are tenants, off on a loopback stack without keys."""

import pytest
from pydantic import ValidationError

from app.settings import Settings


@pytest.fixture(autouse=True)
def _no_limit_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("UPLOAD_RATE", "QUERY_RATE", "MAX_PENDING_FILES_PER_TENANT"):  # the test stack sets them
        monkeypatch.delenv(name, raising=False)


def test_limits_default_on_with_auth_and_off_without() -> None:
    on = Settings(_env_file=None, auth="enabled")
    assert (on.upload_rate, on.query_rate, on.max_pending_files_per_tenant) == ("60/minute", "600/minute", 1000)
    local = Settings(_env_file=None, auth="disabled")  # ./run.sh: one tenant, nobody to protect from anybody
    assert (local.upload_rate, local.query_rate, local.max_pending_files_per_tenant) == ("off", "off", 0)


def test_limits_set_explicitly_are_kept_either_way() -> None:
    s = Settings(
        _env_file=None, auth="disabled", upload_rate="5/second", query_rate="OFF", max_pending_files_per_tenant=7
    )
    assert (s.upload_rate, s.query_rate, s.max_pending_files_per_tenant) == ("5/second", "off", 7)
    assert Settings(_env_file=None, auth="enabled", query_rate="off").query_rate == "off"
    with pytest.raises(ValidationError, match="not a rate limit"):
        Settings(_env_file=None, upload_rate="fast")
