"""Each reader on a real file of its type, and each kind of bad input."""

from __future__ import annotations

import json

import pytest
from ingest_fixtures import HTML, MARKDOWN, PARAGRAPH, POSTS, text_pdf, word_docx

from annotune.ingest.config import IngestConfig
from annotune.ingest.document import FileNotes, ReadError
from annotune.ingest.readers import document_readers

CFG = IngestConfig()


def read(path, cfg=CFG):
    notes = FileNotes()
    docs = list(document_readers()[path.suffix](path, str(path), cfg, notes))
    return docs, notes.as_list()


def test_plain_text_and_markdown_title(tmp_path):
    (tmp_path / "a.txt").write_text(PARAGRAPH)
    (tmp_path / "b.md").write_text(MARKDOWN)
    [txt], _ = read(tmp_path / "a.txt")
    [md], _ = read(tmp_path / "b.md")
    assert txt.text == PARAGRAPH and txt.title is None and txt.path == str(tmp_path / "a.txt")
    assert md.title == "Setup guide" and "## Wi-Fi" in md.text


def test_html_keeps_the_article_and_drops_navigation_and_footer(tmp_path):
    (tmp_path / "p.html").write_text(HTML)
    [doc], _ = read(tmp_path / "p.html")
    assert "Vacuum the pre-filter" in doc.text and "# Caring for your filter" in doc.text
    assert "Shop" not in doc.text and "All rights reserved" not in doc.text and "cookies" not in doc.text
    assert doc.url == "https://tarn.example/filter-care" and doc.meta["author"] == "Tarn Support"


def test_html_without_main_text_is_a_read_error(tmp_path):
    (tmp_path / "empty.htm").write_text("<html><head><title>Nothing</title></head><body></body></html>")
    with pytest.raises(ReadError, match="no main text"):
        read(tmp_path / "empty.htm")


def test_pdf_one_document_per_page_with_title(tmp_path):
    path = text_pdf(tmp_path / "m.pdf", ["First page text about fans.", "", "Third page text."], title="Manual")
    docs, notes = read(path)
    assert [d.position for d in docs] == [{"page": 1}, {"page": 3}]
    assert docs[0].text.startswith("First page text") and docs[0].title == "Manual"
    assert notes == ["pages without a text layer (skipped): 2"]


def test_pdf_without_text_layer_and_corrupt_pdf(tmp_path):
    with pytest.raises(ReadError, match="no text layer.*OCR"):
        read(text_pdf(tmp_path / "scan.pdf", ["", ""]))
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4\ngarbage")
    with pytest.raises(ReadError, match="corrupt or unreadable PDF"):
        read(tmp_path / "bad.pdf")


def test_docx_headings_tables_and_properties(tmp_path):
    [doc], _ = read(word_docx(tmp_path / "h.docx"))
    assert doc.title == "Support handbook" and doc.meta == {"author": "Ann Lee"}
    assert "# Support handbook" in doc.text and "## Returns" in doc.text and "Tarn Mini | two years" in doc.text
    (tmp_path / "bad.docx").write_bytes(b"not a zip")
    with pytest.raises(ReadError, match="not a valid .docx"):
        read(tmp_path / "bad.docx")


def test_csv_text_column_rows_and_metadata(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text('title,body,likes\nFirst,"Hello, world, a text\nover two lines",3\nSecond,Another text,\n')
    docs, _ = read(path, IngestConfig(text_field="body"))
    assert [d.position for d in docs] == [{"row": 2}, {"row": 4}]
    assert docs[0].text == "Hello, world, a text\nover two lines" and docs[0].title == "First"
    assert docs[0].meta == {"likes": "3"} and docs[1].meta == {}
    with pytest.raises(ReadError, match="no column 'text' \\(columns: title, body, likes\\)"):
        read(path)


def test_jsonl_social_posts_keep_metadata_and_skip_bad_lines(tmp_path):
    path = tmp_path / "posts.jsonl"
    path.write_text("\n".join(json.dumps(p) for p in POSTS) + '\n{broken\n["not an object"]\n{"other": 1}\n')
    docs, notes = read(path)
    assert [d.position for d in docs] == [{"line": 1}, {"line": 2}]
    assert docs[0].url == "https://social.example/p1"
    assert docs[0].meta == {"id": "p1", "user": {"name": "maria", "followers": 120},
                            "created_at": "2024-05-01T10:00:00Z", "likes": 14}
    assert notes[0].startswith("line 3: invalid JSON") and "line 4: not a JSON object" in notes[1]
    assert "line 5: no 'text' field" in notes[2]


def test_nested_text_field_and_json_array_export(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps({"posts": [{"post": {"body": "Nested text here"}, "likes": 2}]}))
    [doc], _ = read(path, IngestConfig(text_field="post.body"))
    assert doc.text == "Nested text here" and doc.meta == {"likes": 2} and doc.position == {"index": 0}


def test_latin1_file_is_decoded_and_noted(tmp_path):
    path = tmp_path / "fr.txt"
    path.write_bytes("Un café crème à la pâtisserie.".encode("latin-1"))
    [doc], notes = read(path)
    assert doc.text == "Un café crème à la pâtisserie." and doc.meta["encoding"] == "cp1252"
    assert notes == ["not UTF-8; decoded as cp1252"]


def test_utf16_with_bom_is_decoded(tmp_path):
    path = tmp_path / "w.txt"
    path.write_bytes("Windows Notepad text".encode("utf-16"))
    [doc], _ = read(path)
    assert doc.text == "Windows Notepad text"


def test_a_utf16_byte_order_mark_on_other_bytes_is_a_read_error(tmp_path):
    path = tmp_path / "w.txt"
    path.write_bytes(b"\xff\xfe" + b"odd number of bytes")
    with pytest.raises(ReadError, match="starts with a UTF-16 byte-order mark but is not UTF-16 text .*re-save it as UTF-8"):
        read(path)


def test_binary_file_with_text_extension_is_refused(tmp_path):
    path = tmp_path / "b.txt"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(200))
    with pytest.raises(ReadError, match="binary content in a .txt file"):
        read(path)
