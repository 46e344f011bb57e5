"""Marks and orders the collected tests: everything under tests/integration is `stack` (it uses the
real local servers), so `pytest -m "not stack"` runs the unit tests without starting any; tests
marked `after_all` run last (they check what the whole session left behind)."""

from pathlib import Path

import pytest

INTEGRATION = Path(__file__).parent / "integration"


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(INTEGRATION):
            item.add_marker(pytest.mark.stack)
    items.sort(key=lambda item: item.get_closest_marker("after_all") is not None)  # stable: the rest keep their order
