"""Build the support example's train.jsonl and heldout.jsonl from facts.yaml.

Run from the repository root:

    python examples/support/build.py

facts.yaml is the source of truth; the two JSONL files next to it are
generated and checked in. The script validates the facts first and exits with
status 1, naming the fact id and the problem, if any check fails:

- every fact has an id, answer, key, >= 3 train and >= 1 heldout phrasings;
- the key appears in the fact's answer (case-insensitively);
- keys are unique, and no key occurs in another fact's answer;
- no key occurs in any of the fact's own questions (it would give it away);
- no held-out phrasing equals a training phrasing, and no phrasing is used
  twice (compared case- and punctuation-insensitively).

Output formats (one JSON object per line, UTF-8):

train.jsonl    {"messages": [system, user, assistant], "id": "FACTID-tN"}
heldout.jsonl  {"id": "FACTID-hN", "fact": FACTID, "messages": [system, user, assistant], "keys": [KEY]}
               (the assistant message is the reference answer: `annotune evaluate`'s format)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
FACTS = HERE / "facts.yaml"
TRAIN = HERE / "train.jsonl"
HELDOUT = HERE / "heldout.jsonl"

MIN_TRAIN = 3
MIN_HELDOUT = 1


def fail(fact_id: str, problem: str) -> None:
    print(f"{FACTS.name}: fact {fact_id!r}: {problem}", file=sys.stderr)
    sys.exit(1)


def norm(text: str) -> str:
    """Lower-case, drop punctuation, collapse whitespace: for comparing phrasings."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def load() -> tuple[str, list[dict]]:
    data = yaml.safe_load(FACTS.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        fail("-", "the file must be a mapping with company, system and facts")
    system = data.get("system")
    facts = data.get("facts")
    if not isinstance(system, str) or not system.strip():
        fail("-", "missing top-level 'system' prompt")
    if not isinstance(data.get("company"), str) or not data["company"].strip():
        fail("-", "missing top-level 'company' name")
    if not isinstance(facts, list) or not facts:
        fail("-", "missing or empty 'facts' list")
    return system.strip(), facts


def validate(facts: list[dict]) -> None:
    seen_ids: set[str] = set()
    for i, fact in enumerate(facts):
        fid = fact.get("id") if isinstance(fact, dict) else None
        if not isinstance(fid, str) or not fid.strip():
            fail(f"#{i + 1}", "missing 'id'")
        if fid in seen_ids:
            fail(fid, "duplicate id")
        seen_ids.add(fid)
        for field in ("answer", "key"):
            if not isinstance(fact.get(field), str) or not fact[field].strip():
                fail(fid, f"missing or empty '{field}'")
        for field, minimum in (("train", MIN_TRAIN), ("heldout", MIN_HELDOUT)):
            items = fact.get(field)
            if not isinstance(items, list) or not all(isinstance(q, str) and q.strip() for q in items):
                fail(fid, f"'{field}' must be a list of non-empty strings")
            if len(items) < minimum:
                fail(fid, f"'{field}' has {len(items)} phrasings, need at least {minimum}")
        if fact["key"].casefold() not in fact["answer"].casefold():
            fail(fid, f"key {fact['key']!r} does not appear in the answer")

    seen_keys: dict[str, str] = {}
    seen_questions: dict[str, str] = {}
    for fact in facts:
        fid, key = fact["id"], fact["key"].casefold()
        if key in seen_keys:
            fail(fid, f"key {fact['key']!r} is also the key of fact {seen_keys[key]!r}")
        seen_keys[key] = fid
        for other in facts:
            if other is not fact and key in other["answer"].casefold():
                fail(fid, f"key {fact['key']!r} occurs in the answer of fact {other['id']!r}")
        train = {norm(q) for q in fact["train"]}
        for q in fact["heldout"]:
            if norm(q) in train:
                fail(fid, f"held-out phrasing {q!r} equals a training phrasing")
        for q in fact["train"] + fact["heldout"]:
            if key in q.casefold():
                fail(fid, f"question {q!r} contains the key {fact['key']!r}")
            n = norm(q)
            if n in seen_questions:
                fail(fid, f"phrasing {q!r} is used twice (also in fact {seen_questions[n]!r})")
            seen_questions[n] = fid


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> int:
    system, facts = load()
    validate(facts)
    sys_msg = {"role": "system", "content": system}
    train_rows, heldout_rows = [], []
    for fact in facts:
        fid, answer = fact["id"], fact["answer"].strip()
        for n, q in enumerate(fact["train"], 1):
            train_rows.append({
                "messages": [sys_msg, {"role": "user", "content": q.strip()},
                             {"role": "assistant", "content": answer}],
                "id": f"{fid}-t{n}",
            })
        for n, q in enumerate(fact["heldout"], 1):
            heldout_rows.append({
                "id": f"{fid}-h{n}",
                "fact": fid,
                "messages": [sys_msg, {"role": "user", "content": q.strip()},
                             {"role": "assistant", "content": answer}],
                "keys": [fact["key"]],
            })
    write_jsonl(TRAIN, train_rows)
    write_jsonl(HELDOUT, heldout_rows)
    print(f"{len(facts)} facts: wrote {len(train_rows)} lines to {TRAIN.name}, "
          f"{len(heldout_rows)} lines to {HELDOUT.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
