"""Every format and every kind of bad input through the real API and worker, and the limits
set by configuration."""

import uuid

import httpx
import pytest

from app.intake import filetypes
from tests.fixtures.api import upload, wait_final
from tests.fixtures.documents import (
    HTML_PAGE,
    deep_html,
    make_docx,
    make_encrypted_pdf,
    make_pdf,
    make_pptx,
    make_scanned_pdf,
    zip_bomb_docx,
)
from tests.fixtures.worker import run_worker


def blank_pdf(pages: int, tag: str = "") -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title(tag)  # in the metadata only: the pages stay blank
    for _ in range(pages):
        pdf.add_page()
    return bytes(pdf.output())


def test_every_format_is_embedded_end_to_end(client: httpx.Client) -> None:
    tag = uuid.uuid4().hex  # every file unique: the service may deduplicate identical uploads
    files = {
        "report.docx": make_docx(tag),
        "deck.pptx": make_pptx(tag),
        "tides.html": HTML_PAGE.format(tag=tag).encode(),
        "berths.csv": f"berth,length\nNorth pier,320 m\nSouth pier,{tag}\n".encode(),
        "scan.pdf": make_scanned_pdf([f"Cover page {tag}", None]),
    }
    r = upload(client, *files.items())
    assert r.status_code == 202, r.text
    sent = {f["filename"]: f for f in r.json()["files"]}
    assert {name: f["content_type"] for name, f in sent.items()} == {
        "report.docx": filetypes.DOCX,
        "deck.pptx": filetypes.PPTX,
        "tides.html": filetypes.HTML,
        "berths.csv": filetypes.CSV,
        "scan.pdf": filetypes.PDF,
    }
    run_worker()
    docs = wait_final(client, [f["file_id"] for f in sent.values()])
    for name, f in sent.items():
        doc = docs[f["file_id"]]
        assert doc["status"] == "embedded", (name, doc)
        assert doc["chunk_count"] >= 1
    assert docs[sent["deck.pptx"]["file_id"]]["page_count"] == 3

    hit = client.post("/query", json={"query": "gantry crane on the east quay", "k": 1}).json()["results"][0]
    assert hit["filename"] == "deck.pptx" and hit["page_start"] == 2 and hit["heading_path"] == ["Cargo volumes"]
    hit = client.post("/query", json={"query": "lighthouse keeper reported fog near the cliffs", "k": 1}).json()
    assert hit["results"][0]["filename"] == "scan.pdf" and hit["results"][0]["page_end"] == 2  # the scanned page
    hit = client.post("/query", json={"query": "berth fee revenue growth", "k": 1}).json()["results"][0]
    assert hit["filename"] == "report.docx" and hit["heading_path"] == ["Harbour Annual Report", "Finances"]


def test_bad_inputs_fail_with_their_code_end_to_end(client: httpx.Client) -> None:
    tag = uuid.uuid4().hex
    cases = {
        "truncated.pdf": (make_pdf([f"A report that was cut short {tag}.", "More."])[:900], "pdf_corrupt"),
        "locked.pdf": (make_encrypted_pdf("user-secret"), "pdf_encrypted"),
        "bomb.docx": (zip_bomb_docx(300, tag), "archive_too_large"),
        "deep.html": (deep_html(10_000) + tag.encode(), "html_too_deep"),
        "blank.pdf": (blank_pdf(4, tag), "no_text"),
    }
    ids = {}
    for name, (data, _) in cases.items():
        r = upload(client, (name, data))
        assert r.status_code == 202, (name, r.text)
        ids[name] = r.json()["files"][0]["file_id"]
    run_worker()
    docs = wait_final(client, list(ids.values()))
    for name, (_, code) in cases.items():
        doc = docs[ids[name]]
        assert doc["status"] == "failed" and doc["error"]["code"] == code, (name, doc)
        assert doc["error"]["message"] and not doc["chunk_count"]


def test_limits_set_by_config_fail_end_to_end(client: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker with OCR off and a limit of 200,000 characters (uploads stop at 2 MB in the tests)."""
    from app.settings import get_settings

    tag = uuid.uuid4().hex
    cases = {
        "scan-only.pdf": (make_scanned_pdf([None, None], tag), "ocr_disabled"),
        "one-line.txt": (f"{tag} ".encode() + b"tide " * 300_000, "too_many_characters"),
    }
    ids = {}
    for name, (data, _) in cases.items():
        r = upload(client, (name, data))
        assert r.status_code == 202, (name, r.text)
        ids[name] = r.json()["files"][0]["file_id"]
    with monkeypatch.context() as env:
        env.setenv("OCR_ENABLED", "false")
        env.setenv("MAX_CHARACTERS", "200000")
        get_settings.cache_clear()
        try:
            run_worker()
        finally:
            env.undo()
            get_settings.cache_clear()
    docs = wait_final(client, list(ids.values()))
    for name, (_, code) in cases.items():
        doc = docs[ids[name]]
        assert doc["status"] == "failed" and doc["error"]["code"] == code, (name, doc)
