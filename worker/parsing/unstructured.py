"""The long tail with `unstructured`, an optional extra (requirements-unstructured.txt): e-mail
(EML, Outlook MSG), EPUB, ODT, RTF and XLSX.

unstructured's elements become ours: Title → heading (the first top-level one of a document
is its title), NarrativeText and other text → paragraph, ListItem → list, Table → one `table`
element per row (cells joined with " | ", from the table's HTML), FigureCaption → caption;
headers, footers, page numbers and images are left out. The heading path follows the Title
elements and their depth (h1 is 0; a line that only looks like a title has none).

- E-mail: the subject is the title and heads every path, then one line of From, To, Cc and
  Date; the HTML body if there is one, else the plain one. Attachments are not read (they
  would go to unstructured's auto-partitioner, PDF models included).
- EPUB, RTF: pandoc to HTML, then unstructured's HTML partitioner; ODT: pandoc to DOCX, then
  its DOCX partitioner. No page numbers: pandoc keeps no layout.
- XLSX: each sheet is a page (at most `MAX_PAGES`), headed by its name (not "Sheet1");
  unstructured splits a sheet into its tables; a single-cell row above one that reads like a
  title becomes a heading.
- EPUB, ODT and XLSX are zips: measured before they are opened, like DOCX (`ooxml.check_archive`).
- Whatever the libraries raise for a file they cannot read becomes `document_corrupt`, with
  their message.

Offline, always. unstructured (0.20) fetches NLTK data at import (`AUTO_DOWNLOAD_NLTK`) and
pings its telemetry server at import unless `SCARF_NO_ANALYTICS` or `DO_NOT_TRACK` is the
string "true" (run.sh's `DO_NOT_TRACK=1` does not count): both are switched off here before
unstructured is first imported. Its text classification (narrative text or title?) needs
NLTK's punkt_tab tokenizer and averaged-perceptron tagger, which are data downloads: the three
NLTK calls are replaced by ones that need no data (`_offline_nlp`), and NLTK's downloader is
made to refuse. Pandoc (EPUB, ODT, RTF) runs in its sandbox (no network, no file access) as
unstructured calls it. tests/unit/worker/parsing/test_unstructured.py parses every format with the network cut off
and checks that nothing tried to connect.
"""

import email
import email.policy
import html
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rq.timeouts import BaseTimeoutException

from app.intake import filetypes
from app.settings import Settings
from app.status import ErrorCode, PipelineError
from worker.parsing import Element, Parsed, clean_spaces, limit_exceeded
from worker.parsing.ooxml import check_archive

# Read by unstructured when it is imported: set before anything imports it.
os.environ["AUTO_DOWNLOAD_NLTK"] = "false"
os.environ["SCARF_NO_ANALYTICS"] = "true"
os.environ.setdefault("DO_NOT_TRACK", "1")

_LABELS = {
    filetypes.EML: "e-mail",
    filetypes.MSG: "Outlook message",
    filetypes.EPUB: "EPUB",
    filetypes.ODT: "ODT",
    filetypes.RTF: "RTF",
    filetypes.XLSX: "spreadsheet",
}
_ZIPPED = frozenset({filetypes.EPUB, filetypes.ODT, filetypes.XLSX})
_KINDS = {
    "Title": "heading",
    "NarrativeText": "paragraph",
    "Text": "paragraph",
    "UncategorizedText": "paragraph",
    "Address": "paragraph",
    "EmailAddress": "paragraph",
    "Formula": "paragraph",
    "CodeSnippet": "paragraph",
    "ListItem": "list",
    "Table": "table",
    "FigureCaption": "caption",
}  # anything else (Header, Footer, PageNumber, PageBreak, Image) is left out
_ROW = re.compile(r"<tr[\s>].*?</tr>", re.DOTALL | re.IGNORECASE)
_CELL = re.compile(r"<t[dh][^>]*>(.*?)</t[dh]>", re.DOTALL | re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")
_DEFAULT_SHEET = re.compile(r"sheet\s*\d*$", re.IGNORECASE)  # "Sheet1": no heading

_ready = threading.Lock()
_partitioners: dict[str, Any] = {}


def parse(path: Path, settings: Settings, content_type: str) -> Parsed:
    if content_type not in filetypes.OPTIONAL:
        raise PipelineError(
            ErrorCode.UNSUPPORTED_TYPE, f"No parser for {content_type}: the unstructured extra is missing."
        )
    if content_type in _ZIPPED:
        check_archive(path, settings, _LABELS[content_type])
    parsed = Parsed(elements=iter(()))
    parsed.elements = _Walker(path, content_type, settings, parsed).walk()
    return parsed


class _Walker:
    def __init__(self, path: Path, content_type: str, settings: Settings, parsed: Parsed) -> None:
        self.path, self.content_type, self.settings, self.parsed = path, content_type, settings, parsed
        self.root: tuple[str, ...] = ()  # an e-mail's subject
        self.headings: list[tuple[int, str]] = []  # (depth, text); -1 is a sheet's name
        self.titled = False

    def walk(self) -> Iterator[Element]:
        label = _LABELS[self.content_type]
        try:
            found = _partition(self.path, self.content_type)
            head = _message_head(self.path, self.content_type)
        except (PipelineError, MemoryError, BaseTimeoutException):
            raise  # not the file's fault, or already said (RQ's job timeout is an Exception too)
        except Exception as exc:  # what the libraries raise for a file they cannot read is anything
            if not self.path.exists():
                raise  # the file went away (jobs.py knows what that means)
            message = f"The {label} could not be read ({type(exc).__name__}: {_short(exc)})."
            raise PipelineError(ErrorCode.DOCUMENT_CORRUPT, message) from exc
        if head:
            self.root, self.titled = (head[0].text,), True
            yield from head
        if self.content_type == filetypes.XLSX:
            yield from self._sheets(found)
        else:
            for item in found:
                yield from self._element(item, None)

    def _sheets(self, found: list[Any]) -> Iterator[Element]:
        """A spreadsheet: each sheet is a page, headed by its name."""
        sheet = None
        for item in found:
            page = item.metadata.page_number
            if page != sheet:
                sheet = page
                if page is not None and page > self.settings.max_pages:
                    limit_exceeded(
                        self.settings,
                        self.parsed.stats,
                        ErrorCode.TOO_MANY_PAGES,
                        f"The spreadsheet has more than {self.settings.max_pages:,} sheets; at most "
                        f"{self.settings.max_pages:,} are allowed (MAX_PAGES).",
                    )
                    self.parsed.stats["pages_truncated"] = 1
                    return
                self.parsed.page_count = max(self.parsed.page_count or 0, page or 0)
                name = clean_spaces(item.metadata.page_name or "")
                self.headings = [(-1, name)] if name else []
                if name and not _DEFAULT_SHEET.match(name):
                    yield Element(name, "heading", page, self._path())
            yield from self._element(item, page)

    def _element(self, item: Any, page: int | None) -> Iterator[Element]:
        kind = _KINDS.get(item.category)
        if kind is None:
            return
        if kind == "table":
            for row in _rows(item):
                yield Element(row, "table", page, self._path())
            return
        text = clean_spaces(item.text or "")
        if not text:
            return
        if kind == "heading":
            # depth from the markup (h1 is 0) or the style; none for a line that only looks like a title
            depth = item.metadata.category_depth or 0
            self.headings = [(d, t) for d, t in self.headings if d < depth] + [(depth, text)]
            if not self.titled and depth == 0 and page is None:
                kind, self.titled = "title", True
        yield Element(text, kind, page, self._path())

    def _path(self) -> tuple[str, ...]:
        return self.root + tuple(text for _, text in self.headings)


def _rows(table: Any) -> Iterator[str]:
    """A table's rows, cells joined with " | ", from its HTML (its text alone runs the cells together)."""
    markup = table.metadata.text_as_html
    if not markup:
        if text := clean_spaces(table.text or ""):
            yield text
        return
    for row in _ROW.finditer(markup):
        cells = [clean_spaces(html.unescape(_TAG.sub(" ", cell))) for cell in _CELL.findall(row.group())]
        while cells and not cells[-1]:
            cells.pop()
        if any(cells):
            yield " | ".join(cells)


def _message_head(path: Path, content_type: str) -> list[Element]:
    """An e-mail's subject (its title) and one line of who sent it to whom, and when."""
    if content_type == filetypes.EML:
        with open(path, "rb") as f:
            msg = email.message_from_binary_file(f, policy=email.policy.default)
        subject = str(msg.get("Subject") or "")
        fields = [(name, str(msg.get(name) or "")) for name in ("From", "To", "Cc", "Date")]
    elif content_type == filetypes.MSG:
        from oxmsg import Message

        msg = Message.load(str(path))
        subject = msg.subject or ""
        recipients = ", ".join(r.email_address for r in msg.recipients if r.email_address)
        headers = msg.message_headers
        sent = msg.sent_date.isoformat() if msg.sent_date else headers.get("Date", "")
        to = recipients or headers.get("To", "")
        fields = [("From", msg.sender or ""), ("To", to), ("Cc", headers.get("Cc", "")), ("Date", sent)]
    else:
        return []
    subject = clean_spaces(subject)
    head = [Element(subject, "title", None, (subject,))] if subject else []
    line = "; ".join(f"{name}: {clean_spaces(value)}" for name, value in fields if clean_spaces(value))
    if line:
        head.append(Element(line, "paragraph", None, (subject,) if subject else ()))
    return head


def _partition(path: Path, content_type: str) -> list[Any]:
    partitioners = load()
    # languages=[""]: no language detection (only metadata we do not keep, and slow on long texts)
    options: dict[str, Any] = {"languages": [""]}
    if content_type in (filetypes.EML, filetypes.MSG):
        options["process_attachments"] = False
    return partitioners[content_type](filename=str(path), **options)


def load() -> dict[str, Any]:
    """unstructured's partitioners, imported once, with its NLP made to work offline (bench/parse.py
    calls this too, before it imports another partitioner)."""
    with _ready:
        if not _partitioners:
            _offline_nlp()
            from unstructured.partition.email import partition_email
            from unstructured.partition.epub import partition_epub
            from unstructured.partition.msg import partition_msg
            from unstructured.partition.odt import partition_odt
            from unstructured.partition.rtf import partition_rtf
            from unstructured.partition.xlsx import partition_xlsx

            _partitioners.update(
                {
                    filetypes.EML: partition_email,
                    filetypes.MSG: partition_msg,
                    filetypes.EPUB: partition_epub,
                    filetypes.ODT: partition_odt,
                    filetypes.RTF: partition_rtf,
                    filetypes.XLSX: partition_xlsx,
                }
            )
    return _partitioners


# Common English verbs and auxiliaries: enough for "does this short line have a verb?", all that
# unstructured asks of NLTK's part-of-speech tagger (narrative text has verbs; titles need none).
_VERB_WORDS = """
    am is are was were be been being have has had do does did will would shall should can could may might must
    get gets got make makes made take takes took go goes went come comes came see sees saw know knows knew think
    thinks thought say says said give gives gave find finds found tell tells told use uses need needs want wants
    seem seems feel feels felt leave leaves left keep keeps kept let lets begin begins began show shows hear hears
    run runs ran bring brings brought write writes wrote sit sits stand stands pay pays meet meets set sets lead
    leads read reads grow grows grew open opens win wins buy buys send sends sent build builds built fall falls
    fell cut cuts sell sells sold starts start works work arrive arrives
"""
_VERBS = frozenset(_VERB_WORDS.split())


def _offline_nlp() -> None:
    """Point unstructured's three NLTK calls at code that needs no downloaded data.

    Sentences: NLTK's Punkt tokenizer with default parameters (no trained model); words: NLTK's
    rule-based word tokenizer; parts of speech: only "is this a verb?", from a list of common
    verbs and the -ed ending, instead of the averaged perceptron model. unstructured uses them to
    tell narrative text from titles in plain text (an e-mail body) and spreadsheet cells.
    """
    import nltk
    from nltk.tokenize.destructive import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    sentences = PunktSentenceTokenizer()
    words = NLTKWordTokenizer()

    def sent_tokenize(text: str) -> list[str]:
        return sentences.tokenize(text)

    def word_tokenize(text: str) -> list[str]:
        return [token for sentence in sentences.tokenize(text) for token in words.tokenize(sentence)]

    def pos_tag(text: str) -> list[tuple[str, str]]:
        return [(token, "VB" if _looks_like_verb(token) else "NN") for token in word_tokenize(text)]

    def refuse(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("NLTK data downloads are turned off: docproc parses offline.")

    nltk.download = refuse  # type: ignore[assignment]
    import unstructured.nlp.tokenize as tokenize
    import unstructured.partition.text_type as text_type

    tokenize.download_nltk_packages = refuse  # type: ignore[assignment]
    for module in (tokenize, text_type):
        module.sent_tokenize = sent_tokenize  # type: ignore[assignment]
        module.word_tokenize = word_tokenize  # type: ignore[assignment]
        module.pos_tag = pos_tag  # type: ignore[assignment]


def _looks_like_verb(token: str) -> bool:
    word = token.lower()
    return word in _VERBS or (len(word) > 4 and word.endswith("ed") and word.isalpha())


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
