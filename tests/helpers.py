"""Helpers shared by the tests."""

import time

import httpx

TERMINAL = {"embedded", "failed"}


def run_worker() -> None:
    """Drain the queue with an in-process IngestWorker (the model stays loaded between tests)."""
    from redis import Redis

    from app.settings import get_settings
    from worker.rqworker import IngestWorker

    s = get_settings()
    conn = Redis.from_url(s.valkey_url.get_secret_value())
    IngestWorker([s.queue_name], connection=conn).work(burst=True, logging_level="WARNING")


def wait_final(client: httpx.Client, file_ids: list[str], timeout: float = 120) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        docs = {fid: client.get(f"/files/{fid}").json() for fid in file_ids}
        if all(d.get("status") in TERMINAL for d in docs.values()):
            return docs
        if time.monotonic() > deadline:
            raise TimeoutError(f"files not final: {docs}")
        time.sleep(0.2)


def upload(
    client: httpx.Client, *files: tuple[str, bytes], content_type: str = "application/octet-stream"
) -> httpx.Response:
    return client.post("/upload", files=[("files", (name, data, content_type)) for name, data in files])


def make_pdf(pages: list[str]) -> bytes:
    """A PDF with a text layer, one string per page (fpdf2)."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 6, text)
    return bytes(pdf.output())
