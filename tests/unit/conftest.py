"""The unit tests start no server: they get no fixture of tests/integration/conftest.py."""

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def _scratch_in_a_temp_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """DATA_DIR (scratch of OCR and spooled bytes) in a temp dir, not the local stack's ./data."""
    from app.settings import get_settings

    with pytest.MonkeyPatch.context() as env:
        env.setenv("DATA_DIR", str(tmp_path_factory.mktemp("data")))
        get_settings.cache_clear()
        yield
    get_settings.cache_clear()
