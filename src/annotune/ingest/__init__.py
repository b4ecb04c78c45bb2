"""Ingest: turn a folder of mixed files into clean, deduplicated, redacted chunks with provenance.

Stages, each a pure function of one document except deduplication: read -> clean -> filter -> dedup ->
redact -> chunk. :func:`annotune.ingest.pipeline.ingest` runs them over files and writes ``chunks.jsonl``
and ``report.json``.
"""
