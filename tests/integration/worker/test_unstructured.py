"""Two formats of the optional unstructured extra through the real API and worker (the worker's
network cut off), and the long tail's relatives refused at upload. Skipped without the extra."""

import email.message
import io
import uuid

import httpx
import pytest

from app.intake import filetypes
from tests.fixtures.api import upload, wait_final
from tests.fixtures.long_tail import LONG_TAIL, require_the_extra, zip_package
from tests.fixtures.network import NetworkBlocked
from tests.fixtures.worker import run_worker

require_the_extra()


def test_eml_and_xlsx_are_embedded_end_to_end(client: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    import openpyxl

    # topics no other test uploads: the index is shared by the whole session, and queries take the top hit
    tag = uuid.uuid4().hex  # every file unique: the service may deduplicate identical uploads
    mail = email.message.EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "keeper@apiary.example", "club@apiary.example", "Apiary inspection"
    mail.set_content(
        "The beekeeper opened the third hive on Sunday and found the queen laying eggs on seven frames. "
        f"The honey supers go on in May, once the colony has drawn out the new comb. {tag}\n"
    )
    book = openpyxl.Workbook()
    kilns = book.active
    kilns.title = "Kilns"
    for row in (
        ("Kiln", "Firing temperature", "Glaze"),
        ("Stoneware kiln", "1280 C", "celadon"),
        ("Raku kiln", tag, ""),
    ):
        kilns.append(row)
    buf = io.BytesIO()
    book.save(buf)
    r = upload(client, ("apiary.eml", mail.as_bytes()), ("pottery.xlsx", buf.getvalue()))
    assert r.status_code == 202, r.text
    sent = {f["filename"]: f for f in r.json()["files"]}
    assert {name: f["content_type"] for name, f in sent.items()} == {
        "apiary.eml": filetypes.EML,
        "pottery.xlsx": filetypes.XLSX,
    }
    blocked = NetworkBlocked(monkeypatch)  # the worker talks to the servers on this machine only
    run_worker()
    assert blocked.attempts == []
    docs = wait_final(client, [f["file_id"] for f in sent.values()])
    for name, f in sent.items():
        doc = docs[f["file_id"]]
        assert doc["status"] == "embedded", (name, doc)
        assert doc["chunk_count"] >= 1
    assert docs[sent["pottery.xlsx"]["file_id"]]["page_count"] == 1

    hit = client.post("/query", json={"query": "queen bee laying eggs in the hive", "k": 1}).json()["results"][0]
    assert hit["filename"] == "apiary.eml" and hit["heading_path"] == ["Apiary inspection"]
    hit = client.post("/query", json={"query": "stoneware kiln firing temperature", "k": 1}).json()["results"][0]
    assert hit["filename"] == "pottery.xlsx" and hit["page_start"] == 1 and hit["heading_path"] == ["Kilns"]


def test_unsupported_long_tail_relatives_are_refused_at_upload(client: httpx.Client) -> None:
    ods = zip_package("application/vnd.oasis.opendocument.spreadsheet", {"content.xml": "<x/>"})
    r = upload(client, ("sheet.ods", ods))
    assert r.status_code == 415 and r.json()["detail"]["code"] == "unsupported_type"
    message = r.json()["detail"]["message"]
    assert all(ctype in message for ctype in LONG_TAIL)  # the supported list names the long tail
