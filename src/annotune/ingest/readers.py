"""Readers for document files: plain text, Markdown, HTML, PDF and Word. Each yields :class:`Document`.

Readers raise :class:`ReadError` with a reason the user can act on; anything inside a file that did not stop
it (a page without text) goes to :class:`FileNotes`. Headings come out as Markdown ``#`` lines so that the
chunker can follow the document's structure whatever the source format.
"""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from annotune.ingest.config import IngestConfig
from annotune.ingest.decode import read_text
from annotune.ingest.document import Document, FileNotes, ReadError

Reader = Callable[[Path, str, IngestConfig, FileNotes], Iterator[Document]]
_HYPHENATED = re.compile(r"(\w)-\n(\w)")
_MD_TITLE = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _encoding_meta(encoding: str, notes: FileNotes) -> dict:
    if encoding in ("utf-8", "utf-8-sig"):
        return {}
    if encoding in ("cp1252", "latin-1"):
        notes.add(f"not UTF-8; decoded as {encoding}")
    return {"encoding": encoding}


def read_plain(path: Path, shown: str, cfg: IngestConfig, notes: FileNotes) -> Iterator[Document]:
    text, encoding = read_text(path)
    yield Document(text=text, path=shown, meta=_encoding_meta(encoding, notes))


def read_markdown(path: Path, shown: str, cfg: IngestConfig, notes: FileNotes) -> Iterator[Document]:
    text, encoding = read_text(path)
    title = _MD_TITLE.search(text)
    yield Document(text=text, path=shown, title=title.group(1) if title else None,
                   meta=_encoding_meta(encoding, notes))


def read_html(path: Path, shown: str, cfg: IngestConfig, notes: FileNotes) -> Iterator[Document]:
    import trafilatura
    from trafilatura.metadata import extract_metadata

    html, encoding = read_text(path)
    # Markdown output keeps headings; comments and link targets are page furniture, not content.
    text = trafilatura.extract(html, output_format="markdown", include_formatting=True, include_comments=False,
                               include_links=False, include_images=False)
    if not text or not text.strip():
        raise ReadError("no main text found in the HTML (an empty page, or only navigation and boilerplate)")
    info = extract_metadata(html)
    meta = _encoding_meta(encoding, notes)
    meta.update({k: v for k, v in (("author", info.author), ("date", info.date), ("site", info.sitename)) if v})
    yield Document(text=text, path=shown, title=info.title or None, url=info.url or None, meta=meta)


def read_pdf(path: Path, shown: str, cfg: IngestConfig, notes: FileNotes) -> Iterator[Document]:
    """One document per page, so every chunk can point at its page."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    # pypdf logs each repair it attempts on a damaged file; the report already says what went wrong.
    logging.getLogger("pypdf").setLevel(logging.ERROR)

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise ReadError("encrypted PDF; save a copy without a password and ingest that")
        title = (reader.metadata.title if reader.metadata else None) or None
        pages = len(reader.pages)
    except ReadError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ReadError(f"corrupt or unreadable PDF ({type(exc).__name__}: {exc})") from None
    empty = []
    for number in range(1, pages + 1):
        try:
            text = reader.pages[number - 1].extract_text() or ""
        except Exception as exc:  # pypdf raises many kinds on damaged page streams; one page must not stop the file
            notes.add(f"page {number}: text could not be extracted ({type(exc).__name__})")
            continue
        if not text.strip():
            empty.append(number)
            continue
        # Rejoin words the layout hyphenated at a line end ("exam-\nple").
        text = _HYPHENATED.sub(r"\1\2", text)
        yield Document(text=text, path=shown, title=title, position={"page": number})
    if len(empty) == pages:
        raise ReadError("no text layer: the pages are images (a scan?); run OCR first "
                        "(for example `ocrmypdf in.pdf out.pdf`) and ingest the result")
    if empty:
        notes.add(f"pages without a text layer (skipped): {', '.join(map(str, empty))}")


def read_docx(path: Path, shown: str, cfg: IngestConfig, notes: FileNotes) -> Iterator[Document]:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ReadError(f"not a valid .docx file (corrupt, or not a Word 2007+ document): {exc}") from None
    blocks = [_docx_block(item) for item in document.iter_inner_content()]
    text = "\n\n".join(block for block in blocks if block)
    title = document.core_properties.title or _first_heading(text)
    meta = {"author": document.core_properties.author} if document.core_properties.author else {}
    yield Document(text=text, path=shown, title=title or None, meta=meta)


def _docx_block(item) -> str:
    from docx.table import Table

    if isinstance(item, Table):
        return "\n".join(" | ".join(cell.text.strip() for cell in row.cells) for row in item.rows)
    text = item.text.strip()
    style = item.style.name if item.style is not None else ""
    level = re.fullmatch(r"Heading (\d)", style)
    if text and (level or style == "Title"):
        return "#" * (int(level.group(1)) if level else 1) + " " + text
    return text


def _first_heading(text: str) -> str | None:
    match = _MD_TITLE.search(text)
    return match.group(1) if match else None


def document_readers() -> dict[str, Reader]:
    from annotune.ingest.records import read_csv, read_json, read_jsonl

    return {".txt": read_plain, ".text": read_plain, ".md": read_markdown, ".markdown": read_markdown,
            ".html": read_html, ".htm": read_html, ".pdf": read_pdf, ".docx": read_docx,
            ".csv": read_csv, ".jsonl": read_jsonl, ".json": read_json}
