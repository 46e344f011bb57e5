"""The long tail through the optional unstructured extra (requirements-unstructured.txt): EML,
MSG, EPUB, ODT, RTF and XLSX, each made here (the MSG by a small compound-file writer), sniffed
and parsed with the network cut off (through the API and worker: tests/integration/worker/test_unstructured.py).

Skipped where the extra is not installed:
    .venv/bin/pip install --no-deps -r requirements-unstructured.txt
    ./run.sh test -q tests/unit/worker/parsing/test_unstructured.py
"""

import datetime as dt
import email.message
import io
import itertools
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.intake import filetypes
from app.settings import Settings
from app.status import ErrorCode, PipelineError
from tests.fixtures import ROOT
from tests.fixtures.long_tail import LONG_TAIL, require_the_extra, zip_package
from tests.fixtures.network import NetworkBlocked
from worker.parsing import Element, parse

require_the_extra()


def make_eml(tag: str = "", html: bool = False) -> bytes:
    msg = email.message.EmailMessage()
    msg["From"] = "Alice Harbour <alice@port.example>"
    msg["To"] = "Bob Pilot <bob@port.example>"
    msg["Subject"] = "Crane delivery schedule"
    msg["Date"] = "Mon, 06 Apr 2026 09:30:00 +0000"
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@port.example>"
    msg.set_content(
        "Hi Bob,\n\nThe new gantry crane arrives on the east quay next Tuesday. The pilots will guide the "
        f"barge in at high tide. {tag}\n\nAgenda\n\n- unload the boom sections\n- assemble the gantry\n"
    )
    if html:
        msg.add_alternative(
            "<html><body><h1>Crane delivery</h1><p>The new gantry crane arrives on the east quay next "
            f"Tuesday. {tag}</p><h2>Agenda</h2><ul><li>unload the boom sections</li></ul></body></html>",
            subtype="html",
        )
    msg.add_attachment(b"%PDF-1.4 not read", maintype="application", subtype="pdf", filename="manifest.pdf")
    return msg.as_bytes()


def make_xlsx(tag: str = "") -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    cargo = book.active
    cargo.title = "Cargo"
    cargo.append(["Cargo volumes by month"])
    cargo.append([])
    for row in (("Month", "Containers", "Bulk tonnes"), ("January", 1200, 340), ("February", 1350, tag or 310)):
        cargo.append(row)
    berths = book.create_sheet("Berths")
    for row in (("Berth", "Length", "Depth"), ("North pier", "320 m", "14 m"), ("South pier", "280 m", "12 m")):
        berths.append(row)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def _xhtml(title: str, body: str) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><html xmlns="http://www.w3.org/1999/xhtml" '
        f'xmlns:epub="http://www.idpf.org/2007/ops"><head><title>{title}</title></head><body>{body}</body></html>'
    )


def make_epub(tag: str = "") -> bytes:
    return zip_package(
        filetypes.EPUB,
        {
            "META-INF/container.xml": """
                <?xml version="1.0" encoding="UTF-8"?>
                <container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
                  <rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>
                  </rootfiles>
                </container>""",
            "OEBPS/content.opf": f"""
                <?xml version="1.0" encoding="UTF-8"?>
                <package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="uid">
                  <metadata xmlns:dc="http://purl.org/dc/elements/1.1/">
                    <dc:identifier id="uid">urn:uuid:{uuid.uuid4()}</dc:identifier>
                    <dc:title>Birds of the Estuary</dc:title>
                    <dc:language>en</dc:language>
                    <meta property="dcterms:modified">2026-01-01T00:00:00Z</meta>
                  </metadata>
                  <manifest>
                    <item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>
                    <item id="waders" href="waders.xhtml" media-type="application/xhtml+xml"/>
                    <item id="gulls" href="gulls.xhtml" media-type="application/xhtml+xml"/>
                  </manifest>
                  <spine><itemref idref="waders"/><itemref idref="gulls"/></spine>
                </package>""",
            "OEBPS/nav.xhtml": _xhtml(
                "Contents",
                '<nav epub:type="toc"><ol><li><a href="waders.xhtml">Waders</a></li>'
                '<li><a href="gulls.xhtml">Gulls</a></li></ol></nav>',
            ),
            "OEBPS/waders.xhtml": _xhtml(
                "Waders",
                "<h1>Waders</h1><p>Curlews probe the mud at low tide with their long curved bills. "
                f"{tag}</p><ul><li>Curlew</li><li>Redshank</li></ul>",
            ),
            "OEBPS/gulls.xhtml": _xhtml(
                "Gulls",
                "<h1>Gulls</h1><p>Herring gulls nest on the rooftops of the old town.</p>"
                "<table><tr><th>Species</th><th>Pairs</th></tr><tr><td>Herring gull</td><td>420</td></tr></table>",
            ),
        },
    )


def make_odt(tag: str = "") -> bytes:
    ns = (
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"'
    )
    cells = "".join(
        "<table:table-row>"
        + "".join(f'<table:table-cell office:value-type="string"><text:p>{v}</text:p></table:table-cell>' for v in row)
        + "</table:table-row>"
        for row in (("Year", "Revenue"), ("2023", "10.4 M"))
    )
    return zip_package(
        filetypes.ODT,
        {
            "META-INF/manifest.xml": f"""
                <?xml version="1.0" encoding="UTF-8"?>
                <manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"
                                   manifest:version="1.2">
                  <manifest:file-entry manifest:full-path="/" manifest:media-type="{filetypes.ODT}"/>
                  <manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>
                  <manifest:file-entry manifest:full-path="styles.xml" manifest:media-type="text/xml"/>
                </manifest:manifest>""",
            "styles.xml": f"""
                <?xml version="1.0" encoding="UTF-8"?>
                <office:document-styles {ns} office:version="1.2"><office:styles/></office:document-styles>""",
            "content.xml": f"""
                <?xml version="1.0" encoding="UTF-8"?>
                <office:document-content {ns} office:version="1.2"><office:body><office:text>
                  <text:h text:outline-level="1">Harbour Annual Report</text:h>
                  <text:p>This report covers the harbour's year of operations. {tag}</text:p>
                  <text:h text:outline-level="2">Finances</text:h>
                  <text:p>Revenue from berth fees grew by nine percent in the third quarter.</text:p>
                  <text:list>
                    <text:list-item><text:p>New tariffs for cruise ships</text:p></text:list-item>
                    <text:list-item><text:p>Lower fees for fishing boats</text:p></text:list-item>
                  </text:list>
                  <table:table table:name="Results"><table:table-column table:number-columns-repeated="2"/>
                    {cells}
                  </table:table>
                </office:text></office:body></office:document-content>""",
        },
    )


def make_rtf(tag: str = "") -> bytes:
    return textwrap.dedent(
        rf"""
        {{\rtf1\ansi\deff0{{\fonttbl{{\f0 Times New Roman;}}}}
        {{\stylesheet{{\s0 Normal;}}{{\s1\outlinelevel0\b\fs32 heading 1;}}{{\s2\outlinelevel1\b\fs28 heading 2;}}}}
        {{\pard\s1\outlinelevel0\b\fs32 Ferry Timetable\par}}
        {{\pard\s0 The morning ferry leaves the north pier at 07:00 and reaches the island before eight. {tag}\par}}
        {{\pard\s2\outlinelevel1\b\fs28 Winter service\par}}
        {{\pard\s0 In winter the ferry runs twice a day.\par}}
        \trowd\cellx2500\cellx5000 \pard\intbl Day\cell Departure\cell\row
        \trowd\cellx2500\cellx5000 \pard\intbl Monday\cell 07:00\cell\row
        \pard\par
        }}"""
    ).encode()


# An Outlook message is a compound file (MS-CFB) of property streams (MS-OXMSG); nothing on PyPI
# writes one, so here is the least of both: a version-3 compound file whose streams all live in
# the mini stream (each under 4,096 bytes), and the properties Outlook's readers look for.
_FREE, _END, _FAT_SECTOR, _NONE = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF


_STRING, _INT32, _TIME = 0x001F, 0x0003, 0x0040


def make_cfb(tree: dict) -> bytes:
    """A compound file holding `tree`: a name maps to a stream's bytes, or to a storage's own tree."""
    entries: list[dict] = []

    def add(name: str, node: bytes | dict, kind: int) -> int:
        index = len(entries)
        entries.append({"name": name, "kind": kind, "data": node if kind == 2 else b"", "child": _NONE, "right": _NONE})
        if isinstance(node, dict):
            kids = sorted(
                (add(n, v, 1 if isinstance(v, dict) else 2) for n, v in node.items()),
                key=lambda i: (len(entries[i]["name"]), entries[i]["name"].upper()),  # the CFB name order
            )
            for a, b in itertools.pairwise(kids):
                entries[a]["right"] = b  # siblings as a tree leaning right: still a valid search tree
            entries[index]["child"] = kids[0] if kids else _NONE
        return index

    add("Root Entry", tree, 5)
    mini, minifat = bytearray(), []
    for e in entries:
        data = e["data"]
        assert len(data) < 4096
        count = -(-len(data) // 64)
        e["start"] = len(minifat) if count else _END
        minifat += [*range(len(minifat) + 1, len(minifat) + count), _END] if count else []
        mini += data.ljust(count * 64, b"\0")
    entries[0]["data"] = bytes(mini)  # the root entry's stream is the mini stream

    def pad(data: bytes, fill: bytes) -> bytes:
        return data + fill * ((-len(data) % 512) // len(fill))

    empty = {"name": "", "kind": 0, "child": _NONE, "right": _NONE, "start": 0, "data": b""}
    while len(entries) % 4:
        entries.append(empty)
    minifat_bytes = pad(struct.pack(f"<{len(minifat)}I", *minifat), struct.pack("<I", _FREE))
    mini_bytes = pad(bytes(mini), b"\0")
    n_dir, n_minifat, n_mini = len(entries) // 4, len(minifat_bytes) // 512, len(mini_bytes) // 512
    first_minifat, first_mini = 1 + n_dir, 1 + n_dir + n_minifat
    fat = [_FAT_SECTOR]
    for start, count in ((1, n_dir), (first_minifat, n_minifat), (first_mini, n_mini)):
        fat += [*range(start + 1, start + count), _END]
    assert len(fat) <= 128
    fat += [_FREE] * (128 - len(fat))
    entries[0]["start"] = first_mini if mini else _END

    def entry(e: dict) -> bytes:
        name = (e["name"] + "\0").encode("utf-16-le") if e["name"] else b""
        return struct.pack(
            "<64sHBBIII16sIQQIQ", name, len(name), e["kind"], 1, _NONE, e["right"], e["child"], b"\0" * 16, 0, 0, 0,
            e["start"], len(e["data"]),
        )  # fmt: skip

    header = struct.pack(
        "<8s16sHHHHH6sIIIIIIIII", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", b"\0" * 16, 0x3E, 3, 0xFFFE, 9, 6, b"\0" * 6,
        0, 1, 1, 0, 4096, first_minifat, n_minifat, _END, 0,
    ) + struct.pack("<109I", 0, *[_FREE] * 108)  # fmt: skip
    body = struct.pack("<128I", *fat) + b"".join(entry(e) for e in entries) + minifat_bytes + mini_bytes
    return header + body


def _properties(header: bytes, props: list[tuple[int, int, object]]) -> dict[str, bytes]:
    """A storage's property stream and the streams of its variable-length values."""
    streams, rows = {}, []
    for pid, ptype, value in props:
        tag = pid << 16 | ptype
        if ptype == _STRING:
            data = str(value).encode("utf-16-le")
            streams[f"__substg1.0_{pid:04X}{ptype:04X}"] = data
            rows.append(struct.pack("<IIII", tag, 6, len(data) + 2, 0))
        else:  # fixed length: the value in the row itself
            rows.append(struct.pack("<IIq", tag, 6, value))
    return {"__properties_version1.0": header + b"".join(rows), **streams}


def make_msg(tag: str = "") -> bytes:
    sent = dt.datetime(2026, 4, 6, 9, 30, tzinfo=dt.UTC)
    filetime = int((sent - dt.datetime(1601, 1, 1, tzinfo=dt.UTC)).total_seconds() * 10_000_000)
    recipient = _properties(
        b"\0" * 8,
        [(0x3001, _STRING, "Bob Pilot"), (0x39FE, _STRING, "bob@port.example"), (0x0C15, _INT32, 1)],
    )
    message = _properties(
        struct.pack("<8xIIII8x", 1, 0, 1, 0),  # next recipient id, next attachment id, recipients, attachments
        [
            (0x001A, _STRING, "IPM.Note"),
            (0x0037, _STRING, "Dredging of the outer channel"),
            (0x0039, _TIME, filetime),
            (0x0C1A, _STRING, "Carol Survey"),
            (0x0C1F, _STRING, "carol@port.example"),
            (
                0x1000,
                _STRING,
                "Hello team,\r\n\r\nThe dredger starts on the outer channel in spring and works through the "
                f"summer. Expect the north basin to close for two weeks. {tag}\r\n",
            ),
        ],
    )
    named = {"__substg1.0_00020102": b"", "__substg1.0_00030102": b"", "__substg1.0_00040102": b""}
    return make_cfb({**message, "__recip_version1.0_#00000000": recipient, "__nameid_version1.0": named})


MAKERS = {
    filetypes.EML: ("message.eml", make_eml),
    filetypes.MSG: ("message.msg", make_msg),
    filetypes.EPUB: ("birds.epub", make_epub),
    filetypes.ODT: ("report.odt", make_odt),
    filetypes.RTF: ("ferries.rtf", make_rtf),
    filetypes.XLSX: ("cargo.xlsx", make_xlsx),
}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[NetworkBlocked]:
    blocked = NetworkBlocked(monkeypatch)
    yield blocked
    assert blocked.attempts == [], f"something tried to reach the network: {blocked.attempts}"


def _read(tmp_path: Path, content_type: str, data: bytes | None = None, settings: Settings | None = None):
    name, make = MAKERS[content_type]
    path = tmp_path / name
    path.write_bytes(make() if data is None else data)
    parsed = parse(path, content_type, settings or Settings())
    return list(parsed.elements), parsed


def _failure(tmp_path: Path, content_type: str, data: bytes, settings: Settings | None = None) -> PipelineError:
    with pytest.raises(PipelineError) as info:
        _read(tmp_path, content_type, data, settings)
    return info.value


def _texts(elements: list[Element]) -> list[str]:
    return [e.text for e in elements]


def test_the_extra_makes_the_long_tail_supported() -> None:
    assert set(LONG_TAIL) <= filetypes.OPTIONAL
    assert set(LONG_TAIL) <= set(filetypes.SUPPORTED)
    assert filetypes.SUPPORTED[:7] == (
        filetypes.PDF, filetypes.DOCX, filetypes.PPTX, filetypes.HTML, filetypes.MARKDOWN, filetypes.CSV,
        filetypes.TEXT,
    )  # fmt: skip


@pytest.mark.parametrize("content_type", LONG_TAIL)
def test_each_type_is_recognised_by_content(content_type: str) -> None:
    name, make = MAKERS[content_type]
    head = make()[: filetypes.SNIFF_BYTES]
    assert filetypes.sniff(head, name) == content_type
    assert filetypes.sniff(head, "upload") == content_type  # no name needed
    assert filetypes.sniff(head, "upload.bin", "application/octet-stream") == content_type
    if content_type not in (filetypes.EML, filetypes.RTF):  # binary: a text name contradicts it
        with pytest.raises(filetypes.ContentTypeMismatch):
            filetypes.sniff(head, "notes.txt")
    with pytest.raises(filetypes.ContentTypeMismatch):
        filetypes.sniff(head, "report.pdf")


def test_sniffing_details() -> None:
    eml, rtf = make_eml(), make_rtf()
    # an e-mail named as a text type stays what the name says; RTF's magic decides
    assert filetypes.sniff(eml, "mail.txt") == filetypes.TEXT
    assert filetypes.sniff(rtf, "ferries.txt") == filetypes.RTF
    # e-mail headers without an .eml name must look like a message, not any "Key: value" lines
    assert filetypes.sniff(b"Title: My notes\nDate: 2026-01-01\n\nBody text\n", "notes") == filetypes.TEXT
    assert filetypes.sniff(b"Title: My notes\nAuthor: me\n\nBody text\n", "notes.eml") == filetypes.EML
    assert filetypes.sniff(b"From alice Mon Apr  6 09:30:00 2026\nFrom: a@b.example\nSubject: x\n\nhi\n", "1") == (
        filetypes.EML
    )
    assert filetypes.sniff(b"plain words, no headers\n", "notes.eml") == filetypes.TEXT  # an odd .eml is text
    # a declared type claims its type
    assert filetypes.sniff(eml, "mail", "message/rfc822") == filetypes.EML
    with pytest.raises(filetypes.ContentTypeMismatch):
        filetypes.sniff(make_xlsx(), "sheet", filetypes.DOCX)
    # compound files: an Outlook message by its stream names or its name; a Word 97 file is still unsupported
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600 + "WordDocument".encode("utf-16-le") + b"\0" * 100
    assert filetypes.sniff(ole, "old.doc") is None
    assert filetypes.sniff(ole, "mail.msg") == filetypes.MSG  # the parser will say whether it is one
    # OpenDocument types other than text, and a zip with no mimetype, stay unsupported
    ods = zip_package("application/vnd.oasis.opendocument.spreadsheet", {"content.xml": "<x/>"})
    assert filetypes.sniff(ods, "sheet.ods") is None
    assert filetypes.sniff(b"PK\x03\x04" + b"\x00" * 60, "archive.zip") is None


def test_without_the_extra_the_long_tail_stays_unsupported() -> None:
    """In a process where unstructured cannot be imported: every type as before the extra."""
    docs = {ctype: MAKERS[ctype][1]()[: filetypes.SNIFF_BYTES].hex() for ctype in LONG_TAIL}
    script = f"""
import json, sys
sys.modules["unstructured"] = None  # not importable
from app.intake import filetypes
docs = {{ctype: bytes.fromhex(h) for ctype, h in {json.dumps(docs)}.items()}}
names = {json.dumps({c: n for c, (n, _) in MAKERS.items()})}
print(json.dumps({{
    "optional": sorted(filetypes.OPTIONAL),
    "supported": filetypes.SUPPORTED,
    "named": {{c: filetypes.sniff(d, names[c]) for c, d in docs.items()}},
    "unnamed": {{c: filetypes.sniff(d, "upload") for c, d in docs.items()}},
}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    result = json.loads(out.stdout)
    assert result["optional"] == []
    assert len(result["supported"]) == 7 and not set(result["supported"]) & set(LONG_TAIL)
    assert result["named"] == dict.fromkeys(LONG_TAIL)  # all unsupported: 415 at upload
    # with no name, text is text as before: an e-mail, an RTF file
    assert result["unnamed"] == {
        **dict.fromkeys(LONG_TAIL),
        filetypes.EML: filetypes.TEXT,
        filetypes.RTF: filetypes.TEXT,
    }


def test_eml_subject_headers_body_lists_and_no_attachments(tmp_path: Path, offline: NetworkBlocked) -> None:
    els, parsed = _read(tmp_path, filetypes.EML)
    assert (els[0].text, els[0].kind) == ("Crane delivery schedule", "title")
    assert els[1].text == (
        "From: Alice Harbour <alice@port.example>; To: Bob Pilot <bob@port.example>; "
        "Date: Mon, 06 Apr 2026 09:30:00 +0000"
    )
    crane = next(e for e in els if "gantry crane" in e.text)
    assert crane.kind == "paragraph" and crane.heading_path == ("Crane delivery schedule",)
    agenda = next(e for e in els if e.text == "Agenda")
    assert agenda.kind == "heading"
    items = [e for e in els if e.kind == "list"]
    assert _texts(items) == ["unload the boom sections", "assemble the gantry"]
    assert items[0].heading_path == ("Crane delivery schedule", "Agenda")
    assert all(e.page is None for e in els) and parsed.page_count is None
    assert not any("PDF" in e.text for e in els)  # the attachment is not read


def test_eml_prefers_the_html_body(tmp_path: Path, offline: NetworkBlocked) -> None:
    els, _ = _read(tmp_path, filetypes.EML, make_eml(html=True))
    assert [(e.text, e.kind) for e in els if e.kind in ("heading", "list")] == [
        ("Crane delivery", "heading"),
        ("Agenda", "heading"),
        ("unload the boom sections", "list"),
    ]
    assert els[-1].heading_path == ("Crane delivery schedule", "Crane delivery", "Agenda")


def test_msg_subject_sender_recipients_and_body(tmp_path: Path, offline: NetworkBlocked) -> None:
    els, _ = _read(tmp_path, filetypes.MSG)
    assert (els[0].text, els[0].kind) == ("Dredging of the outer channel", "title")
    assert els[1].text == (
        'From: "Carol Survey" <carol@port.example>; To: bob@port.example; Date: 2026-04-06T09:30:00+00:00'
    )
    body = " ".join(_texts(els[2:]))
    assert "Hello team," in body and "north basin to close for two weeks" in body
    assert all(e.heading_path[0] == "Dredging of the outer channel" for e in els)


def test_epub_chapters_headings_lists_tables(tmp_path: Path, offline: NetworkBlocked) -> None:
    els, _ = _read(tmp_path, filetypes.EPUB)
    got = [(e.text, e.kind, e.heading_path) for e in els]
    assert ("Waders", "title", ("Waders",)) in got
    curlews = next(e for e in els if e.text.startswith("Curlews"))
    assert curlews.kind == "paragraph" and curlews.heading_path == ("Waders",)
    assert [e.text for e in els if e.kind == "list"] == ["Curlew", "Redshank"]
    gulls = next(e for e in els if e.text == "Gulls")
    assert gulls.kind == "heading" and gulls.heading_path == ("Gulls",)
    assert [(e.text, e.heading_path) for e in els if e.kind == "table"] == [
        ("Species | Pairs", ("Gulls",)),
        ("Herring gull | 420", ("Gulls",)),
    ]
    assert "Contents" not in _texts(els)  # the navigation document is not in the spine


def test_odt_headings_with_their_path_lists_tables(tmp_path: Path, offline: NetworkBlocked) -> None:
    els, parsed = _read(tmp_path, filetypes.ODT)
    assert [(e.text, e.kind, e.heading_path) for e in els] == [
        ("Harbour Annual Report", "title", ("Harbour Annual Report",)),
        ("This report covers the harbour's year of operations.", "paragraph", ("Harbour Annual Report",)),
        ("Finances", "heading", ("Harbour Annual Report", "Finances")),
        ("Revenue from berth fees grew by nine percent in the third quarter.", "paragraph",
         ("Harbour Annual Report", "Finances")),
        ("New tariffs for cruise ships", "list", ("Harbour Annual Report", "Finances")),
        ("Lower fees for fishing boats", "list", ("Harbour Annual Report", "Finances")),
        ("Year | Revenue", "table", ("Harbour Annual Report", "Finances")),
        ("2023 | 10.4 M", "table", ("Harbour Annual Report", "Finances")),
    ]  # fmt: skip
    assert all(e.page is None for e in els) and parsed.page_count is None  # pandoc keeps no layout


def test_rtf_headings_paragraphs_table(tmp_path: Path, offline: NetworkBlocked) -> None:
    els, _ = _read(tmp_path, filetypes.RTF)
    assert [(e.text, e.kind, e.heading_path) for e in els] == [
        ("Ferry Timetable", "title", ("Ferry Timetable",)),
        ("The morning ferry leaves the north pier at 07:00 and reaches the island before eight.", "paragraph",
         ("Ferry Timetable",)),
        ("Winter service", "heading", ("Ferry Timetable", "Winter service")),
        ("In winter the ferry runs twice a day.", "paragraph", ("Ferry Timetable", "Winter service")),
        ("Day | Departure", "table", ("Ferry Timetable", "Winter service")),
        ("Monday | 07:00", "table", ("Ferry Timetable", "Winter service")),
    ]  # fmt: skip


def test_xlsx_sheets_are_pages_with_their_rows(tmp_path: Path, offline: NetworkBlocked) -> None:
    els, parsed = _read(tmp_path, filetypes.XLSX)
    assert [(e.text, e.kind, e.page, e.heading_path) for e in els] == [
        ("Cargo", "heading", 1, ("Cargo",)),
        ("Cargo volumes by month", "heading", 1, ("Cargo", "Cargo volumes by month")),
        ("Month | Containers | Bulk tonnes", "table", 1, ("Cargo", "Cargo volumes by month")),
        ("January | 1200 | 340", "table", 1, ("Cargo", "Cargo volumes by month")),
        ("February | 1350 | 310", "table", 1, ("Cargo", "Cargo volumes by month")),
        ("Berths", "heading", 2, ("Berths",)),
        ("Berth | Length | Depth", "table", 2, ("Berths",)),
        ("North pier | 320 m | 14 m", "table", 2, ("Berths",)),
        ("South pier | 280 m | 12 m", "table", 2, ("Berths",)),
    ]
    assert parsed.page_count == 2


def test_xlsx_sheet_limit_fails_or_truncates(tmp_path: Path, offline: NetworkBlocked) -> None:
    error = _failure(tmp_path, filetypes.XLSX, make_xlsx(), Settings(max_pages=1))
    assert error.code == ErrorCode.TOO_MANY_PAGES
    els, parsed = _read(tmp_path, filetypes.XLSX, settings=Settings(max_pages=1, limit_mode="truncate"))
    assert {e.page for e in els} == {1} and parsed.stats["truncated"] == 1


def test_zipped_formats_are_measured_before_they_are_opened(tmp_path: Path) -> None:
    for content_type in (filetypes.XLSX, filetypes.EPUB, filetypes.ODT):
        error = _failure(tmp_path, content_type, MAKERS[content_type][1](), Settings(max_decompressed_bytes=1000))
        assert error.code == ErrorCode.ARCHIVE_TOO_LARGE, content_type


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        (filetypes.XLSX, make_xlsx()[:-300]),  # truncated: no zip directory
        (filetypes.XLSX, zip_package("x", {"[Content_Types].xml": "<Types/>", "xl/workbook.xml": "<workbook/>"})),
        (filetypes.EPUB, zip_package(filetypes.EPUB, {"OEBPS/a.xhtml": "<html/>"})),  # no container
        (filetypes.ODT, make_odt()[:-300]),
        (filetypes.MSG, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 2000),  # a compound-file header and nothing
        (filetypes.MSG, make_cfb({"Book": b"not a message"})),  # a compound file, but no message inside
    ],
    ids=["xlsx-truncated", "xlsx-empty-workbook", "epub-no-container", "odt-truncated", "msg-empty", "msg-not-mail"],
)
def test_broken_files_fail_document_corrupt(tmp_path: Path, offline: NetworkBlocked, content_type: str, data: bytes):
    error = _failure(tmp_path, content_type, data)
    assert error.code == ErrorCode.DOCUMENT_CORRUPT, error
    assert "could not be read" in error.message or "damaged" in error.message


def test_offline_from_a_fresh_process_with_nothing_set(tmp_path: Path) -> None:
    """The strongest form: a new Python process in which the network is blocked (recorded, as above)
    before anything is imported, with none of the switches in its environment, and, where the
    machine allows it (root), in a network namespace of its own, so pandoc is cut off too."""
    files = {}
    for content_type, (name, make) in MAKERS.items():
        (tmp_path / name).write_bytes(make())
        files[content_type] = str(tmp_path / name)
    script = f"""
import json, socket, sys
attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args[1:] or args)[:200])
    raise OSError("network blocked")
socket.socket.connect = socket.socket.connect_ex = socket.getaddrinfo = socket.create_connection = refuse

from pathlib import Path
import nltk
from worker.parsing import parse
out = {{}}
for content_type, path in {json.dumps(files)}.items():
    out[content_type] = [e.text for e in parse(Path(path), content_type).elements]
try:
    nltk.download("punkt_tab")
    downloads = "allowed"
except RuntimeError as exc:
    downloads = str(exc)
print(json.dumps({{"attempts": attempts, "texts": out, "nltk_download": downloads}}))
"""
    switches = ("DO_NOT_TRACK", "SCARF_NO_ANALYTICS", "AUTO_DOWNLOAD_NLTK")
    env = {k: v for k, v in os.environ.items() if k not in switches}
    env["NLTK_DATA"] = str(tmp_path / "no-nltk-data")  # and no NLTK data to find
    argv = [sys.executable, "-c", script]
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        argv = ["unshare", "-n", *argv]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["attempts"] == [], result["attempts"]
    assert "turned off" in result["nltk_download"]
    for content_type, texts in result["texts"].items():
        assert len(texts) >= 3, (content_type, texts)
    assert "Ferry Timetable" in result["texts"][filetypes.RTF]
    assert "January | 1200 | 340" in result["texts"][filetypes.XLSX]
