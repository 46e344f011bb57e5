"""The import direction of docs/architecture.md, checked over the code's import statements:

    app.api (routes, deps, errors ...)  ->  services: app.intake, app.retrieval, app.answering
        ->  app.stores  ->  the shared base (settings, status, lease, fencing, scratch, embedding, observability)

A router never imports another router; services never import the API; stores import neither;
the worker uses services and stores, never the API; nothing under app/ or worker/ imports the
worker from app/, the devstack, or the tests.
"""

import ast
from pathlib import Path

import pytest

from tests.fixtures import ROOT

SERVICES = ("app.intake", "app.retrieval", "app.answering")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports (absolute names; `from a import b` counts as a and a.b)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def within(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


MODULES = {module_name(p): imports_of(p) for d in ("app", "worker") for p in sorted((ROOT / d).rglob("*.py"))}


def violations(source: tuple[str, ...], forbidden: tuple[str, ...], allow_self: bool = True) -> list[str]:
    out = []
    for mod, imported in MODULES.items():
        if not within(mod, *source):
            continue
        for name in sorted(imported):
            if within(name, *forbidden) and not (allow_self and within(name, mod)):
                out.append(f"{mod} imports {name}")
    return out


def test_the_import_graph_is_read():
    assert len(MODULES) > 60
    assert "app.stores.files" in MODULES["app.intake.receiver"] or any(
        within(n, "app.stores") for n in MODULES["app.intake.receiver"]
    )


def test_a_router_never_imports_another_router():
    routers = sorted(m for m in MODULES if m.startswith("app.api.routes."))
    assert len(routers) >= 6
    bad = []
    for mod in routers:
        for name in MODULES[mod]:
            if within(name, "app.api.routes") and not within(name, mod) and name != "app.api.routes":
                bad.append(f"{mod} imports {name}")
    assert bad == []


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        (SERVICES, ("app.api", "app.main", "app.gunicorn_conf")),
        (("app.stores",), ("app.api", "app.main", *SERVICES)),
        (
            ("app.settings", "app.status", "app.lease", "app.fencing", "app.scratch", "app.embedding"),
            ("app.api", "app.main", *SERVICES),
        ),
        (("app",), ("worker", "devstack", "tests", "bench")),
        (("worker",), ("app.api", "app.main", "app.mcp", "devstack", "tests", "bench")),
        (("app.mcp",), ("app.api.routes", "app.main")),
        ((*SERVICES, "app.stores"), ("app.mcp",)),
    ],
    ids=[
        "services-not-api",
        "stores-not-services-or-api",
        "base-not-above",
        "app-not-worker",
        "worker-not-api",
        "mcp-not-routers",
        "nothing-below-uses-mcp",
    ],
)
def test_imports_point_one_way(layer, forbidden):
    assert violations(layer, forbidden) == []


def test_the_api_layer_outside_routes_never_imports_a_router():
    helpers = [m for m in MODULES if within(m, "app.api") and not within(m, "app.api.routes")]
    assert "app.api.errors" in helpers
    bad = [f"{m} imports {n}" for m in helpers for n in sorted(MODULES[m]) if within(n, "app.api.routes")]
    assert bad == []
