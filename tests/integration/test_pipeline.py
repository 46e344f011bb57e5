"""Upload -> status in MongoDB -> RQ job -> parse, chunk, embed, index -> search,
through the real API process and real servers."""

import httpx

from tests.fixtures.api import upload, wait_final
from tests.fixtures.documents import make_pdf
from tests.fixtures.worker import run_worker

TOPICS = {
    "volcano.pdf": [
        "Mount Veyra is a stratovolcano whose last eruption in 1821 buried the valley in ash. "
        "Geologists monitor sulfur dioxide emissions from its crater every week.",
        "The lava flows of Mount Veyra are rich in basalt and cooled into hexagonal columns near the coast.",
    ],
    "bakery.pdf": [
        "The sourdough starter at the Linden bakery is fed twice daily with rye flour and spring water. "
        "Loaves are proofed overnight in cane baskets before baking at dawn.",
    ],
    "orbit.pdf": [
        "Satellites in geostationary orbit circle the Earth once per sidereal day at about 35,786 kilometres "
        "altitude, so they appear fixed in the sky to ground antennas.",
    ],
}


def test_upload_embeds_and_query_finds_the_right_passage(client: httpx.Client) -> None:
    ids = {}
    for name, pages in TOPICS.items():
        r = upload(client, (name, make_pdf(pages)), content_type="application/pdf")
        assert r.status_code == 202, r.text
        (f,) = r.json()["files"]
        assert f["status"] == "queued" and f["content_type"] == "application/pdf"
        assert f["status_url"] == f"/files/{f['file_id']}"
        ids[name] = f["file_id"]

    run_worker()
    docs = wait_final(client, list(ids.values()))
    for doc in docs.values():
        assert doc["status"] == "embedded", doc
        assert doc["chunk_count"] >= 1 and doc["attempts"] == 1 and len(doc["sha256"]) == 64
        assert doc["error"] is None and doc["finished_at"]
    assert docs[ids["volcano.pdf"]]["page_count"] == 2

    own = {"file_ids": list(ids.values())}  # other tests' documents share the session database
    r = client.post("/query", json={"query": "when did the volcano last erupt?", "k": 3, "filters": own})
    assert r.status_code == 200, r.text
    top = r.json()["results"][0]
    assert top["file_id"] == ids["volcano.pdf"]
    assert "1821" in top["text"] and top["page_start"] == 1 and top["filename"] == "volcano.pdf"

    top = client.post("/query", json={"query": "how is the bread dough fermented", "k": 3, "filters": own}).json()[
        "results"
    ][0]
    assert top["file_id"] == ids["bakery.pdf"]
    lava = client.post("/query", json={"query": "basalt columns formed by cooled lava", "k": 1, "filters": own}).json()
    assert lava["results"][0]["page_end"] == 2 and "basalt" in lava["results"][0]["text"]


def test_several_files_in_one_request(client: httpx.Client) -> None:
    r = upload(
        client,
        ("notes.txt", b"Quarterly notes: the heron colony nested on the north island this spring."),
        ("guide.md", b"# Guide\n\n## Setup\n\nInstall the tide gauge on the pier.\n\n- check the battery\n"),
        ("report.pdf", make_pdf(["The committee approved the new cycling lanes on Harbour Road."])),
    )
    assert r.status_code == 202, r.text
    files = r.json()["files"]
    assert [f["content_type"] for f in files] == ["text/plain", "text/markdown", "application/pdf"]
    assert len({f["file_id"] for f in files}) == 3
    run_worker()
    docs = wait_final(client, [f["file_id"] for f in files])
    assert {d["status"] for d in docs.values()} == {"embedded"}
    own = {"file_ids": [f["file_id"] for f in files]}
    hit = client.post("/query", json={"query": "tide gauge installation on the pier", "k": 1, "filters": own}).json()[
        "results"
    ][0]
    assert hit["filename"] == "guide.md" and hit["heading_path"] == ["Guide", "Setup"]


def test_broken_pdf_fails_with_its_code_and_the_next_file_is_embedded(client: httpx.Client) -> None:
    broken = upload(client, ("broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ngarbage" * 3))
    good = upload(client, ("after.txt", b"The ferry to Ostra leaves at seven from the east quay."))
    assert broken.status_code == 202 and good.status_code == 202
    bid, gid = broken.json()["files"][0]["file_id"], good.json()["files"][0]["file_id"]
    run_worker()
    docs = wait_final(client, [bid, gid])
    assert docs[bid]["status"] == "failed"
    assert docs[bid]["error"]["code"] == "pdf_corrupt" and docs[bid]["error"]["message"]
    assert docs[gid]["status"] == "embedded"


def test_file_without_text_fails_no_text(client: httpx.Client) -> None:
    fid = upload(client, ("blank.pdf", make_pdf(["", ""]))).json()["files"][0]["file_id"]
    run_worker()
    doc = wait_final(client, [fid])[fid]
    assert doc["status"] == "failed" and doc["error"]["code"] == "no_text" and doc["chunk_count"] is None
