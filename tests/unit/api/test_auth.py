"""AUTH=disabled is allowed on a loopback bind only."""

import pytest

from app.api.auth import check_bind, is_loopback
from app.settings import Settings


@pytest.mark.parametrize(
    ("bind", "loopback"),
    [("127.0.0.1:8000", True), ("127.0.0.5:1", True), ("[::1]:8000", True), ("localhost:8000", True),
     ("unix:/run/docproc.sock", True), ("0.0.0.0:8000", False), ("[::]:8000", False), ("10.0.0.4:8000", False),
     ("api.example.com:80", False), (":8000", False)],
)  # fmt: skip
def test_auth_disabled_only_on_loopback(bind: str, loopback: bool) -> None:
    assert is_loopback(bind) is loopback
    settings = Settings(_env_file=None, auth="disabled", api_bind=bind)
    if loopback:
        check_bind(settings)
    else:
        with pytest.raises(RuntimeError, match="AUTH=disabled"):
            check_bind(settings)
    check_bind(Settings(_env_file=None, auth="enabled", api_bind=bind))  # with keys, any bind
