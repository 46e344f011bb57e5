"""The README's commands, run exactly as printed against the real stack: every shell block marked
`<!-- readme-test: run -->` (or `run, without DOCPROC_API_KEY`) is run by bash from the repository's
root, with `DOCPROC_URL` and `DOCPROC_API_KEY` (the variables the README says to set) pointing at
the test stack, and must succeed; the blocks that need a placeholder filled in are not marked."""

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures import ROOT
from tests.fixtures.stack import Proc, Stack, rq_worker_argv

MARKED = re.compile(r"<!-- readme-test: (run(?:, without DOCPROC_API_KEY)?) -->\n```bash\n(.*?)```", re.S)


def marked_blocks() -> list[tuple[bool, str]]:
    """(with the key?, script) of each marked block, in README order."""
    text = (ROOT / "README.md").read_text()
    return [(mode == "run", script) for mode, script in MARKED.findall(text)]


@pytest.fixture(scope="module")
def worker(stack: Stack) -> Iterator[Proc]:
    """A real RQ worker on the session queue while the README's `--wait` runs."""
    from app.settings import get_settings

    proc = stack.spawn("rq-readme", rq_worker_argv(get_settings().queue_name, burst=False))
    yield proc
    proc.stop()


def test_the_readme_marks_what_it_runs() -> None:
    blocks = marked_blocks()
    assert len(blocks) >= 4
    scripts = "\n".join(s for _, s in blocks)
    for needed in ("docproc upload", "docproc search", "docproc ask", "docproc keys create", "/mcp", "/retrieval"):
        assert needed in scripts, needed
    # nothing marked that would need a value filled in or touch the machine
    commands = [line for line in scripts.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in commands if "…" in line]
    for forbidden in ("./run.sh", "pip install", "apt-get", "docker", "rm -rf"):
        assert forbidden not in scripts


def test_the_docproc_command_is_installed_for_this_checkout() -> None:
    script = ROOT / ".venv" / "bin" / "docproc"
    assert script.is_file(), "run ./run.sh once: it installs .venv/bin/docproc"
    where = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", "import app.cli.docproc as m; print(m.__file__)"],
        cwd="/", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).resolve().is_relative_to(ROOT.resolve()), (
        f".venv/bin/docproc runs {where.stdout.strip()}, not this checkout: run ./run.sh to install it here"
    )


def test_the_readme_commands_run_as_printed(api_url: str, stack: Stack, worker: Proc) -> None:
    tenant = f"readme-{uuid.uuid4().hex[:6]}"
    key = stack.key(tenant, "read,write")
    outputs = []
    try:
        for with_key, script in marked_blocks():
            env = {k: v for k, v in os.environ.items() if k not in ("DOCPROC_URL", "DOCPROC_API_KEY", "ADMIN_KEY")}
            env.update(DOCPROC_URL=api_url, COLUMNS="200", NO_COLOR="1")
            if with_key:
                env["DOCPROC_API_KEY"] = key
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                timeout=900,
            )  # fmt: skip
            assert done.returncode == 0, (
                f"README block failed:\n{script}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
            )
            outputs.append((script, done.stdout))
    finally:
        with stack.client(api_url, tenant=tenant) as client:
            for d in client.get("/files", params={"limit": 500}).json()["items"]:
                client.delete(f"/files/{d['file_id']}")
    by_kind = {
        kind: out for script, out in outputs for kind in ("upload", "tools/list", "/retrieval") if kind in script
    }
    assert "embedded" in by_kind["upload"] and "0 failed" in by_kind["upload"]
    tools = {t["name"] for t in json.loads(by_kind["tools/list"])["result"]["tools"]}
    assert {"search", "ask", "upload_document"} <= tools
    records = json.loads(by_kind["/retrieval"])["records"]
    assert records and all(r["metadata"]["knowledge_base"] == "handbook" and r["score"] >= 0.3 for r in records)
