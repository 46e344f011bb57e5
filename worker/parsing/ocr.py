"""OCR of one PDF page: rendered by poppler (pdf2image), read by tesseract (pytesseract).

One page at a time, through a temporary file: the rendered page (8 MB of grey
pixels for a Letter page at 300 dpi) goes from pdftoppm to tesseract without
being decoded in this process. Tesseract runs with OMP_THREAD_LIMIT=1: its
OpenMP threads cost more than they gain on a page, and the cores belong to the
worker.
"""

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import pytesseract
from pdf2image import convert_from_path
from pdf2image.exceptions import PDFInfoNotInstalledError, PDFPageCountError, PDFPopplerTimeoutError, PDFSyntaxError

from app import scratch
from app.settings import Settings
from app.status import ErrorCode, PipelineError
from worker.metrics import timed_stage

MAX_PIXELS = 50_000_000  # a page larger than A2 at the configured dpi is rendered at a lower dpi


@timed_stage("ocr")  # the job's `ocr` stage (docproc_stage_seconds{stage="ocr"})
def page_text(path: Path, page_number: int, page_size: tuple[float, float], settings: Settings) -> str:
    """The text tesseract reads on page `page_number` (1-based) of the PDF at `path`."""
    _check_languages(settings.ocr_languages)
    dpi = render_dpi(page_size, settings.ocr_dpi)
    with scratch.temp_dir(scratch.root(settings), "ocr-") as tmp:  # a kill -9 leaves it to the sweep
        try:
            images = convert_from_path(
                path,
                dpi=dpi,
                first_page=page_number,
                last_page=page_number,
                grayscale=True,
                output_folder=tmp,
                paths_only=True,
                timeout=settings.ocr_page_timeout_s,
            )
        except PDFInfoNotInstalledError as exc:
            raise PipelineError(ErrorCode.OCR_FAILED, "OCR is not available: poppler is not installed.") from exc
        except PDFPopplerTimeoutError as exc:
            raise PipelineError(
                ErrorCode.OCR_FAILED, f"Rendering page {page_number} for OCR took too long ({exc})."
            ) from exc
        except (PDFPageCountError, PDFSyntaxError) as exc:
            raise PipelineError(ErrorCode.OCR_FAILED, f"Page {page_number} could not be rendered ({exc}).") from exc
        if not images:
            raise PipelineError(ErrorCode.OCR_FAILED, f"Page {page_number} could not be rendered.")
        try:
            with _single_threaded():
                return pytesseract.image_to_string(
                    images[0],
                    lang=settings.ocr_languages,
                    config=f"--dpi {dpi}",  # a PGM file carries no resolution; tesseract would guess 70
                    timeout=settings.ocr_page_timeout_s,
                )
        except pytesseract.TesseractNotFoundError as exc:
            raise PipelineError(ErrorCode.OCR_FAILED, "OCR is not available: tesseract is not installed.") from exc
        except (pytesseract.TesseractError, RuntimeError) as exc:  # RuntimeError: pytesseract's timeout
            raise PipelineError(ErrorCode.OCR_FAILED, f"OCR of page {page_number} failed ({exc}).") from exc


def render_dpi(page_size: tuple[float, float], dpi: int) -> int:
    """`dpi`, lowered for a page so large that its image would exceed MAX_PIXELS."""
    width_in, height_in = page_size[0] / 72, page_size[1] / 72
    pixels = width_in * height_in * dpi * dpi
    if pixels <= MAX_PIXELS:
        return dpi
    return max(36, math.floor(dpi * math.sqrt(MAX_PIXELS / pixels)))


def _check_languages(languages: str) -> None:
    missing = set(languages.split("+")) - installed_languages()
    if missing:
        raise PipelineError(
            ErrorCode.OCR_FAILED,
            f"OCR language {', '.join(sorted(missing))} is not installed on the worker "
            f"(installed: {', '.join(sorted(installed_languages()))}); check OCR_LANGUAGES.",
        )


@lru_cache
def installed_languages() -> frozenset[str]:
    try:
        return frozenset(pytesseract.get_languages(config=""))
    except (pytesseract.TesseractNotFoundError, pytesseract.TesseractError, OSError) as exc:
        raise PipelineError(ErrorCode.OCR_FAILED, "OCR is not available: tesseract is not installed.") from exc


@contextmanager
def _single_threaded() -> Iterator[None]:
    # pytesseract passes this process's environment to tesseract and takes no other;
    # set only around the call, so that this process's own OpenMP users are not limited.
    before = os.environ.get("OMP_THREAD_LIMIT")
    os.environ["OMP_THREAD_LIMIT"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("OMP_THREAD_LIMIT", None)
        else:
            os.environ["OMP_THREAD_LIMIT"] = before
