"""Project hygiene that CI enforces: lint, and pins in step with the declared dependencies."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures import ROOT


def test_ruff_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[\[=<>!~ ;]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


@pytest.mark.parametrize(
    "stem", ["requirements", "requirements-dev", "requirements-secantus", "requirements-unstructured"]
)
def test_every_declared_dependency_is_pinned(stem: str) -> None:
    pinned_lines = [
        ln for ln in (ROOT / f"{stem}.txt").read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==\S+", ln) for ln in pinned_lines), "only exact pins"
    pinned = _names(ROOT / f"{stem}.txt")
    if stem in ("requirements-dev", "requirements-unstructured"):
        pinned |= _names(ROOT / "requirements.txt")
    missing = _names(ROOT / f"{stem}.in") - pinned
    assert not missing, f"run ./freeze.sh: {sorted(missing)} declared in {stem}.in but not pinned"


def test_torch_is_the_cpu_build() -> None:
    pins = (ROOT / "requirements.txt").read_text()
    assert "torch==2.13.0" in pins and "nvidia" not in pins.lower()
