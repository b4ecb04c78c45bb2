"""Bytes to text: byte-order marks, UTF-8, a legacy fallback, and refusing binary files with a text name."""

from __future__ import annotations

import codecs
from pathlib import Path

from annotune.ingest.document import ReadError

_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# Bytes that never appear in text files: C0 controls except tab, newline, form feed and carriage return.
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 12, 13))
_BLOCK = 1 << 20


def check_not_binary(head: bytes, suffix: str) -> None:
    """Raise when the first bytes of a file look like a binary format rather than text."""
    if not head:
        return
    controls = sum(head.count(bytes([b])) for b in _CONTROL)
    if b"\x00" in head or controls / len(head) > 0.05:
        raise ReadError(f"binary content in a {suffix} file (NUL or control bytes); "
                        "it is not text: remove it or give it the right extension")


def sniff_encoding(path: Path) -> str:
    """The encoding to open ``path`` with: a BOM's, else UTF-8 when the whole file decodes, else cp1252/latin-1.

    The file is scanned in blocks, so a decision is made before any document is emitted and memory stays flat.
    """
    with path.open("rb") as fh:
        head = fh.read(_BLOCK)
        for bom, name in _BOMS:
            if head.startswith(bom):
                return _check_decodes(path, name)
        check_not_binary(head[:8192], path.suffix or "text")
        decoder = codecs.getincrementaldecoder("utf-8")()
        block = head
        try:
            while block:
                decoder.decode(block)
                block = fh.read(_BLOCK)
            decoder.decode(b"", final=True)
            return "utf-8"
        except UnicodeDecodeError:
            pass
    return _legacy_encoding(path)


def _check_decodes(path: Path, encoding: str) -> str:
    """``encoding`` (a byte-order mark's) when the whole file decodes with it, else a clear error."""
    decoder = codecs.getincrementaldecoder(encoding)()
    done = 0
    with path.open("rb") as fh:
        try:
            while block := fh.read(_BLOCK):
                decoder.decode(block)
                done += len(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise ReadError(f"starts with a {encoding.upper()} byte-order mark but is not {encoding.upper()} text "
                            f"(near byte {done + exc.start}); re-save it as UTF-8") from None
    return encoding


def _legacy_encoding(path: Path) -> str:
    # cp1252 is what "not UTF-8" usually means (Windows, Excel); it leaves five bytes undefined, latin-1 none.
    try:
        with path.open("r", encoding="cp1252") as fh:
            while fh.read(_BLOCK):
                pass
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def read_text(path: Path) -> tuple[str, str]:
    """The whole file as text, and the encoding used."""
    encoding = sniff_encoding(path)
    return path.read_text(encoding=encoding), encoding
