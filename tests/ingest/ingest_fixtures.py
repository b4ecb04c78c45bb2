"""Builders for ingest test inputs: every supported file type, made here rather than stored as binaries."""

from __future__ import annotations

import json
from pathlib import Path

PARAGRAPH = ("The Tarn purifier cleans the air of a room of up to forty square metres. Replace the filter every "
             "six months, or sooner when the indicator turns red. ")


def text_pdf(path: Path, pages: list[str], title: str | None = None) -> Path:
    """A minimal, valid PDF with one line of Helvetica text per page (offsets computed for the xref table)."""
    objects: list[bytes] = []
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, text in enumerate(pages):
        stream = f"BT /F1 11 Tf 40 700 Td ({text}) Tj ET".encode() if text else b"0 0 m 100 100 l S"
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {5 + 2 * i} 0 R "
                       "/Resources << /Font << /F1 3 0 R >> >> >>".encode())
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    info = None
    if title:
        objects.append(f"<< /Title ({title}) >>".encode())
        info = len(objects)
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    trailer = f"<< /Size {len(objects) + 1} /Root 1 0 R" + (f" /Info {info} 0 R" if info else "") + " >>"
    out += f"trailer\n{trailer}\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))
    return path


def word_docx(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.core_properties.title = "Support handbook"
    document.core_properties.author = "Ann Lee"
    document.add_heading("Support handbook", level=1)
    document.add_paragraph("Customers reach the support desk by phone or e-mail during office hours. " * 2)
    document.add_heading("Returns", level=2)
    document.add_paragraph("Returned devices are checked within five working days and refunded after that. " * 2)
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Model", "Warranty"
    table.cell(1, 0).text, table.cell(1, 1).text = "Tarn Mini", "two years"
    document.save(str(path))
    return path


HTML = """<html><head><title>Filter care | Tarn</title><link rel="canonical" href="https://tarn.example/filter-care">
<meta name="author" content="Tarn Support"></head><body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/shop">Shop</a></li><li><a href="/about">About us</a></li></ul></nav>
<article><h1>Caring for your filter</h1>
<p>{p}</p><h2>Cleaning the pre-filter</h2><p>Vacuum the pre-filter once a month with a soft brush attachment so
that dust does not clog the main filter, and let it dry completely before you put it back.</p></article>
<footer><p>Copyright 2024 Tarn Ltd. All rights reserved.</p><p>We use cookies to improve your experience.</p></footer>
</body></html>""".replace("{p}", PARAGRAPH * 2)

MARKDOWN = f"""# Setup guide

{PARAGRAPH}

## Wi-Fi

Hold the Wi-Fi button for five seconds until the light blinks blue, then open the app and follow the steps
it shows to connect the purifier to your home network.
"""

POSTS = [
    {"id": "p1", "text": "Loving my new Tarn purifier, the bedroom air feels much fresher after one week of use!",
     "user": {"name": "maria", "followers": 120}, "created_at": "2024-05-01T10:00:00Z", "likes": 14,
     "url": "https://social.example/p1"},
    {"id": "p2", "text": "Support answered in minutes and sent a new filter for free, great service from Tarn.",
     "user": {"name": "jon", "followers": 8}, "created_at": "2024-05-02T09:30:00Z", "likes": 3},
]


def mixed_folder(root: Path) -> Path:
    """A folder with one file of every supported type plus broken ones; returns it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "notes.txt").write_text(f"{PARAGRAPH}\nQuestions? Write to help@tarn.example or call +44 20 7946 0958.\n")
    (root / "guide.md").write_text(MARKDOWN)
    (root / "page.html").write_text(HTML)
    text_pdf(root / "manual.pdf", ["The purifier has three fan speeds and a quiet night mode for bedrooms.",
                                   "Error E27 means the filter door is open; close it and restart the unit."],
             title="Tarn manual")
    text_pdf(root / "scan.pdf", ["", ""])
    word_docx(root / "handbook.docx")
    (root / "posts.jsonl").write_text("\n".join(json.dumps(p) for p in POSTS) + "\n{not json\n")
    rows = ["text,author,likes", f'"{PARAGRAPH.replace("Tarn", "Fjell")}",kim,5',
            '"Short unhelpful row, but long enough to count as text in the table.",lee,1']
    (root / "reviews.csv").write_text("\n".join(rows) + "\n")
    (root / "latin1.txt").write_bytes(("Le purificateur Tarn nettoie l'air d'une pièce jusqu'à quarante mètres "
                                       "carrés. Changez le filtre tous les six mois, café crème.").encode("latin-1"))
    sub = root / "broken"
    sub.mkdir()
    (sub / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (sub / "corrupt.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf at all\n")
    (sub / "corrupt.docx").write_bytes(b"PK\x03\x04 not a zip archive")
    (sub / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (sub / "missing.txt").symlink_to(sub / "nowhere.txt")
    return root
