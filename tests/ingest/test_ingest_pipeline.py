"""The whole stage through the real command: a mixed folder, the report, re-runs, interruptions, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_cli
from ingest_fixtures import PARAGRAPH, mixed_folder

from annotune.errors import AnnotuneError
from annotune.ingest.config import IngestConfig
from annotune.ingest.pipeline import ingest

EXPECTED = {
    "guide.md": "read", "handbook.docx": "read", "latin1.txt": "read", "manual.pdf": "read", "notes.txt": "read",
    "page.html": "read", "posts.jsonl": "read", "reviews.csv": "read", "scan.pdf": "failed",
    "broken/binary.txt": "failed", "broken/corrupt.pdf": "failed", "broken/corrupt.docx": "failed",
    "broken/image.png": "skipped", "broken/missing.txt": "failed", "big.txt": "skipped",
}


def chunks_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "chunks.jsonl").read_text().splitlines()]


@pytest.fixture
def folder(tmp_path) -> Path:
    root = mixed_folder(tmp_path / "in")
    (root / "big.txt").write_text(PARAGRAPH * 1000)  # ~150 KB, over the 0.1 MB limit the tests set
    return root


def test_mixed_folder_through_the_cli(folder, tmp_path):
    out = tmp_path / "out"
    result = run_cli("ingest", str(folder), "--out", str(out), "--max-file-mb", "0.1", "--no-progress")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    statuses = {Path(f["path"]).relative_to(folder).as_posix(): f["status"] for f in report["file_list"]}
    assert statuses == EXPECTED
    reasons = {Path(f["path"]).name: f["reason"] for f in report["file_list"]}
    assert "no text layer" in reasons["scan.pdf"] and "binary content" in reasons["binary.txt"]
    assert "over max_file_mb" in reasons["big.txt"] and "unsupported file type '.png'" in reasons["image.png"]
    assert "corrupt" in reasons["corrupt.pdf"] and "not a valid .docx" in reasons["corrupt.docx"]
    chunks = chunks_of(out)
    assert report["chunks"]["total"] == len(chunks) > 8
    assert {c["source"]["path"] for c in chunks} == {str(folder / n) for n, s in EXPECTED.items() if s == "read"}
    for chunk in chunks:
        assert set(chunk) == {"id", "text", "source", "meta"} and chunk["text"].strip()
        assert set(chunk["source"]) == {"path", "title", "url", "position"}
    notes = next(c for c in chunks if c["source"]["path"].endswith("notes.txt"))
    assert "<EMAIL>" in notes["text"] and "<PHONE>" in notes["text"] and "help@tarn.example" not in notes["text"]
    assert report["pii"]["counts"] == {"EMAIL": 1, "PHONE": 1}
    post = next(c for c in chunks if c["source"]["path"].endswith("posts.jsonl"))
    assert post["meta"]["likes"] == 14 and post["meta"]["user"]["name"] == "maria"
    assert "5 failed" in result.stdout and "scan.pdf: no text layer" in result.stdout
    assert "redacted: EMAIL 1, PHONE 1" in result.stdout


def test_duplicates_are_dropped_and_reported_in_clusters(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    text = " ".join(f"Step {n}: turn the {w} dial until the {c} light shows, then wait {n + 2} seconds."
                    for n, (w, c) in enumerate(zip(["left", "right", "top", "back", "small", "large"] * 2,
                                                   ["green", "blue", "red", "white", "amber", "pink"] * 2)))
    (root / "a.txt").write_text(text)
    (root / "b.txt").write_text(text.upper())
    (root / "c.txt").write_text(text.replace("forty", "fifty", 1) + " Thanks.")
    report = ingest([str(root)], tmp_path / "out", IngestConfig(progress=False, workers=1))
    data = report.as_dict()
    assert data["duplicates"]["exact"] == 1 and data["duplicates"]["near"] == 1
    [cluster] = data["duplicates"]["clusters"]
    assert cluster["kept"]["path"] == str(root / "a.txt")
    assert [(Path(d["path"]).name, d["kind"]) for d in cluster["dropped"]] == [("b.txt", "exact"), ("c.txt", "near")]
    assert len(chunks_of(tmp_path / "out")) == 1


def test_rerun_reads_only_new_and_changed_files(tmp_path):
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    (root / "a.txt").write_text(PARAGRAPH + " First file.")
    (root / "b.txt").write_text("Another topic entirely: the warranty covers parts and labour for two years.")
    cfg = IngestConfig(progress=False, workers=1)
    ingest([str(root)], out, cfg)
    first = {c["source"]["path"]: c["id"] for c in chunks_of(out)}
    (root / "b.txt").write_text("The warranty was changed: it now covers parts and labour for three years.")
    (root / "c.txt").write_text(PARAGRAPH.upper() + " FIRST FILE.")  # an exact copy of a.txt, read earlier
    (root / "d.txt").write_text("A new document about the night mode, which dims the lights and slows the fan.")
    data = ingest([str(root)], out, cfg).as_dict()
    statuses = {Path(f["path"]).name: f["status"] for f in data["file_list"]}
    assert statuses == {"a.txt": "unchanged", "b.txt": "read", "c.txt": "read", "d.txt": "read"}
    assert data["duplicates"]["exact"] == 1  # c.txt against a.txt from the first run
    chunks = {c["source"]["path"]: c for c in chunks_of(out)}
    assert set(chunks) == {str(root / n) for n in ("a.txt", "b.txt", "d.txt")}
    assert chunks[str(root / "a.txt")]["id"] == first[str(root / "a.txt")]
    assert "three years" in chunks[str(root / "b.txt")]["text"]
    (root / "a.txt").unlink()
    data = ingest([str(root)], out, cfg).as_dict()
    statuses = {Path(f["path"]).name: f["status"] for f in data["file_list"]}
    # c.txt was a duplicate of the removed a.txt, so it is read again and now kept.
    assert statuses == {"a.txt": "removed", "b.txt": "unchanged", "c.txt": "read", "d.txt": "unchanged"}
    assert {Path(c["source"]["path"]).name for c in chunks_of(out)} == {"b.txt", "c.txt", "d.txt"}


def test_changed_config_reads_everything_again(tmp_path):
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    (root / "a.txt").write_text(PARAGRAPH)
    ingest([str(root)], out, IngestConfig(progress=False, workers=1))
    data = ingest([str(root)], out, IngestConfig(progress=False, workers=1, chunk_tokens=100)).as_dict()
    assert data["files"]["read"] == 1 and "configuration changed" in data["notes"][0]


def test_interrupted_run_leaves_previous_outputs_whole(tmp_path, monkeypatch):
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    (root / "a.txt").write_text(PARAGRAPH)
    ingest([str(root)], out, IngestConfig(progress=False, workers=1))
    before = {name: (out / name).read_bytes() for name in ("chunks.jsonl", "report.json")}
    (root / "b.txt").write_text(PARAGRAPH.replace("Tarn", "Fjell") + " Extra sentence for a new file.")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("annotune.ingest.pipeline._absorb", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ingest([str(root)], out, IngestConfig(progress=False, workers=1))
    assert {name: (out / name).read_bytes() for name in before} == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_parallel_workers_give_the_same_output_as_one_process(folder, tmp_path):
    shutil.rmtree(folder / "broken")
    one = ingest([str(folder)], tmp_path / "one", IngestConfig(progress=False, workers=1))
    two = ingest([str(folder)], tmp_path / "two", IngestConfig(progress=False, workers=2))
    assert chunks_of(tmp_path / "one") == chunks_of(tmp_path / "two")
    assert one.as_dict()["drops"] == two.as_dict()["drops"]


def test_user_errors(tmp_path):
    with pytest.raises(AnnotuneError, match="nowhere: no such file or folder"):
        ingest([str(tmp_path / "nowhere")], tmp_path / "out", IngestConfig())
    (tmp_path / "file").write_text("x")
    with pytest.raises(AnnotuneError, match="is a file"):
        ingest([str(tmp_path)], tmp_path / "file", IngestConfig())
    config = tmp_path / "ingest.yaml"
    config.write_text("redact_patterns:\n  order: '(unclosed'\n")
    result = run_cli("ingest", str(tmp_path), "--out", str(tmp_path / "o"), "--config", str(config))
    assert result.returncode == 2 and result.stderr.startswith("error: invalid configuration")
    assert "redact_patterns.order" in result.stderr and "not a valid regular expression" in result.stderr
    with pytest.raises(ValueError, match="chunk_overlap \\(500\\) must be smaller"):
        IngestConfig(chunk_overlap=500)


def test_nothing_readable_says_so_and_exits_non_zero(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("ingest", str(empty), "--out", str(tmp_path / "a"), "--no-progress")
    assert result.returncode == 0 and result.stdout.startswith("no files of a supported type found; 0 new document(s)")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "b.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(200))
    result = run_cli("ingest", str(broken), "--out", str(tmp_path / "b"), "--no-progress")
    assert result.returncode == 1 and "failed: " in result.stdout and "binary content" in result.stdout
    assert result.stderr.strip() == "error: none of the files could be read (the reasons are above and in report.json)"
    assert json.loads((tmp_path / "b" / "report.json").read_text())["files"]["failed"] == 1


def test_config_file_and_no_redact_flag(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    (root / "a.txt").write_text("Order ORD-7 was placed by ann@example.com, who is a very loyal customer.")
    config = tmp_path / "ingest.yaml"
    config.write_text("redact_patterns:\n  order: 'ORD-\\d+'\nmin_words: 3\n")
    assert run_cli("ingest", str(root), "--out", str(tmp_path / "a"), "--config", str(config)).returncode == 0
    [chunk] = chunks_of(tmp_path / "a")
    assert chunk["text"] == "Order <ORDER> was placed by <EMAIL>, who is a very loyal customer."
    result = run_cli("ingest", str(root), "--out", str(tmp_path / "b"), "--config", str(config), "--no-redact")
    assert "PII redaction: off" in result.stdout
    [chunk] = chunks_of(tmp_path / "b")
    assert "ann@example.com" in chunk["text"] and "ORD-7" in chunk["text"]


def test_chunks_import_into_the_workbench_as_write_tasks(folder, tmp_path):
    import sqlalchemy as sa

    from annotune.annotate import importing, schema, store
    from annotune.annotate.db import open_database

    shutil.rmtree(folder / "broken")
    out = tmp_path / "out"
    ingest([str(folder)], out, IngestConfig(progress=False, workers=1))
    chunks = chunks_of(out)
    database = open_database(f"sqlite:///{tmp_path / 'workbench.db'}")
    with database.transaction() as conn:
        project = store.create_project(conn, "docs", "write")
        result = importing.import_file(conn, project, out / "chunks.jsonl")
        again = importing.import_file(conn, project, out / "chunks.jsonl")
        rows = conn.execute(sa.select(schema.records.c.ext_id, schema.records.c.payload, schema.records.c.source)
                            ).all()
    assert (result.added, result.problems, again.added) == (len(chunks), [], 0)
    by_id = {row.ext_id: row for row in rows}
    for chunk in chunks:
        row = by_id[chunk["id"]]
        assert row.payload["context"] == chunk["text"]  # a write task shows the chunk as its context
        assert row.source["path"] == chunk["source"]["path"] and row.source["position"] == chunk["source"]["position"]


def test_keep_pii_from_the_config_file_and_the_command_line(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    (root / "a.txt").write_text("Our help desk is help@shop.example and 020 7946 0958; "
                                "the complaint came from ann@example.com on 020 7946 0111.")
    config = tmp_path / "ingest.yaml"
    config.write_text("min_words: 3\nredact:\n  keep: [help@shop.example]\n")
    assert run_cli("ingest", str(root), "--out", str(tmp_path / "a"), "--config", str(config),
                   "--keep-pii", "020-7946-0958").returncode == 0
    [chunk] = chunks_of(tmp_path / "a")
    assert chunk["text"] == ("Our help desk is help@shop.example and 020 7946 0958; "
                             "the complaint came from <EMAIL> on <PHONE>.")
    config.write_text("redact:\n  keep: [help@shop.example]\n  allow: [x]\n")
    result = run_cli("ingest", str(root), "--out", str(tmp_path / "b"), "--config", str(config))
    assert result.returncode != 0 and "redact: unknown key(s) allow" in result.stderr
    assert not (tmp_path / "b" / "chunks.jsonl").exists()
