"""DOCX: headings with their paths, lists, tables, captions, Word's page breaks, tracked changes and text boxes."""

import io
from pathlib import Path

from app.intake import filetypes
from tests.fixtures.documents import make_docx
from tests.fixtures.parsing import read_elements
from worker.parsing import Element


def test_docx_headings_lists_tables_and_pages(tmp_path: Path) -> None:
    els, _ = read_elements(tmp_path, "report.docx", make_docx(), filetypes.DOCX)
    title = ("Harbour Annual Report",)
    finances, outlook = (*title, "Finances"), (*title, "Finances", "Outlook")
    assert els == [
        Element("Harbour Annual Report", "title", 1, title),
        Element("This report covers the harbour's year of operations.", "paragraph", 1, title),
        Element("Finances", "heading", 1, finances),
        Element("Revenue from berth fees grew by nine percent in the third quarter.", "paragraph", 1, finances),
        Element("New tariffs for cruise ships", "list", 1, finances),
        Element("Lower fees for fishing boats", "list", 1, finances),
        Element("Year | Revenue | Profit", "table", 1, finances),
        Element("2023 | 10.4 M | 2.1 M", "table", 1, finances),
        Element("Outlook", "heading", 2, outlook),  # after Word's page break
        Element("Dredging of the outer channel starts in spring.", "paragraph", 2, outlook),
        Element("Figure 1: cargo volumes by month", "caption", 2, outlook),
    ]


def test_docx_tracked_changes_fields_and_text_boxes(tmp_path: Path) -> None:
    import docx
    from docx.oxml import parse_xml

    w = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    d = docx.Document()
    p = d.add_paragraph("The berth is ")
    for xml in (
        f'<w:ins {w} w:id="1" w:author="a"><w:r><w:t xml:space="preserve">three hundred </w:t></w:r></w:ins>',
        f'<w:del {w} w:id="2" w:author="a"><w:r><w:delText>two hundred </w:delText></w:r></w:del>',
        f'<w:fldSimple {w} w:instr="DOCPROPERTY unit"><w:r><w:t>metres</w:t></w:r></w:fldSimple>',
        f"<w:r {w}><w:t> long.</w:t></w:r>",
    ):
        p._p.append(parse_xml(xml))
    box = d.add_paragraph("Main text.")._p
    box.append(
        parse_xml(
            f'<w:r {w} xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006">'
            '<mc:AlternateContent><mc:Choice Requires="wps"><w:txbxContent><w:p><w:r><w:t>In a box.</w:t></w:r>'
            "</w:p></w:txbxContent></mc:Choice><mc:Fallback><w:txbxContent><w:p><w:r><w:t>In a box.</w:t></w:r>"
            "</w:p></w:txbxContent></mc:Fallback></mc:AlternateContent></w:r>"
        )
    )
    buf = io.BytesIO()
    d.save(buf)
    els, _ = read_elements(tmp_path, "changes.docx", buf.getvalue(), filetypes.DOCX)
    assert [e.text for e in els] == ["The berth is three hundred metres long.", "Main text.", "In a box."]


def test_docx_never_laid_out_by_word_has_no_page_numbers(tmp_path: Path) -> None:
    import docx

    d = docx.Document()
    d.add_paragraph("A memo written by a script.")
    buf = io.BytesIO()
    d.save(buf)
    els, _ = read_elements(tmp_path, "memo.docx", buf.getvalue(), filetypes.DOCX)
    assert els == [Element("A memo written by a script.", "paragraph", None, ())]
