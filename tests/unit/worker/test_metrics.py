"""The job observer on its own: stage timings and the stage an error went through."""

import time
from collections.abc import Iterator

import pytest


def test_job_observer_times_nested_stages_exclusively(caplog: pytest.LogCaptureFixture) -> None:
    from worker.metrics import JobObserver, timed_stage, worker_metrics

    @timed_stage("ocr")
    def ocr_page() -> None:
        time.sleep(0.5)

    def elements() -> Iterator[int]:
        for i in range(3):
            time.sleep(0.1)  # parsing
            if i == 1:
                ocr_page()
            yield i

    m = worker_metrics()
    before = {s: m.stage_seconds.labels(s)._sum.get() for s in ("parse", "ocr", "chunk")}
    with caplog.at_level("INFO", logger="worker.stages"), JobObserver("f-unit", "rid-unit") as job:
        with job.stage("chunk"):
            for _ in job.timed("parse", elements()):
                time.sleep(0.02)  # chunking
        job.finish("embedded", pages=1, chunks=3, tokens=90)
    spent = {s: m.stage_seconds.labels(s)._sum.get() - before[s] for s in before}
    # bounds wide enough for a loaded machine, narrow enough to tell whether a nested stage was counted twice
    assert 0.3 <= spent["parse"] < 0.7  # 3 × 100 ms, without the OCR (+500 ms if it were included)
    assert 0.5 <= spent["ocr"] < 0.9
    assert 0.06 <= spent["chunk"] < 0.3  # 3 × 20 ms, without parsing (+300 ms if it were included)
    records = [r for r in caplog.records if r.name == "worker.stages"]
    assert [r.stage for r in records if getattr(r, "event", "") == "stage"] == ["chunk", "parse", "ocr"]
    job_line = next(r for r in records if r.event == "job")
    assert job_line.outcome == "embedded" and job_line.chunks == 3 and job_line.file_id == "f-unit"


def test_job_observer_marks_the_stage_an_error_went_through(caplog: pytest.LogCaptureFixture) -> None:
    from app.status import ErrorCode, PipelineError
    from worker.metrics import JobObserver

    job = JobObserver("f-err")
    with caplog.at_level("INFO", logger="worker.stages"), pytest.raises(PipelineError), job:
        with job.stage("download"):
            pass
        with job.stage("chunk"), job.stage("parse"):
            raise PipelineError(ErrorCode.PDF_CORRUPT)
    lines = {r.stage: r for r in caplog.records if getattr(r, "event", "") == "stage" and r.file_id == "f-err"}
    assert lines["download"].outcome == "ok" and not hasattr(lines["download"], "error")
    assert lines["parse"].outcome == "failed" and lines["parse"].error == "pdf_corrupt"
    assert lines["chunk"].outcome == "failed"
    # an exception leaving the job is its outcome `error`
    job_line = next(r for r in caplog.records if getattr(r, "event", "") == "job" and r.file_id == "f-err")
    assert job_line.outcome == "error" and job_line.code == "pdf_corrupt"
