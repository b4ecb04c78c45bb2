"""The cross-domain benchmark sets (benchmarks/domains/): valid, leak-free, scorable, of the shapes promised, and
exactly what build.py generates."""

import importlib.util
import re
import sys
from collections import Counter, defaultdict

from conftest import REPO

from annotune.dataset import read_dataset, validate
from annotune.evaluate.data import read_questions

DOMAINS = REPO / "benchmarks" / "domains"
NAMES = sorted(p.name for p in DOMAINS.iterdir() if (p / "train.jsonl").is_file())


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def _build_module():
    spec = importlib.util.spec_from_file_location("domains_build", DOMAINS / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def _train(name: str):
    result = read_dataset(DOMAINS / name / "train.jsonl")
    report = validate(result)
    assert result.format == "openai" and report.ok, (name, [str(p) for p in report.problems])
    return result.conversations


def test_there_are_at_least_four_domains_and_build_py_generates_exactly_the_checked_in_files(tmp_path):
    build = _build_module()
    assert NAMES == sorted(d.name for d in build.DOMAINS) and len(NAMES) >= 4
    for domain in build.DOMAINS:
        build.write(domain, tmp_path)
        for file in ("train.jsonl", "heldout.jsonl"):
            assert (tmp_path / domain.name / file).read_bytes() == (DOMAINS / domain.name / file).read_bytes(), \
                f"{domain.name}/{file} is stale: run python benchmarks/domains/build.py"


def test_every_held_out_question_is_new_and_scorable_by_its_keys():
    for name in NAMES:
        trained = {_norm(m.content) for conv in _train(name) for m in conv.messages if m.role == "user"}
        questions = read_questions(DOMAINS / name / "heldout.jsonl")
        assert len(questions) >= 30, name
        owners = defaultdict(set)  # key -> the facts whose questions it scores
        for q in questions:
            assert _norm(q.text) not in trained, f"{name}: {q.id} is asked in training: {q.text!r}"
            assert q.keys, f"{name}: {q.id} has no keys"
            for key in q.keys:
                assert key.casefold() in q.reference.casefold(), f"{name}: {q.id}: {key!r} not in the reference"
                assert key.casefold() not in q.text.casefold(), f"{name}: {q.id}: the question gives {key!r} away"
                owners[key.casefold()].add(q.id.rsplit("-h", 1)[0])
        shared = {key: facts for key, facts in owners.items() if len(facts) > 1}
        assert not shared, f"{name}: keys shared by several facts: {shared}"


def test_the_domains_cover_the_shapes_the_sweep_needs():
    phrasings, systems, multi_turn, multi_sentence = set(), set(), set(), set()
    for name in NAMES:
        convs = _train(name)
        answers = Counter(m.content for c in convs for m in c.messages if m.role == "assistant")
        phrasings |= set(answers.values())  # each fact's answer recurs once per phrasing of its question
        systems |= {c.messages[0].role == "system" for c in convs}
        if any(sum(m.role == "user" for m in c.messages) > 1 for c in convs):
            multi_turn.add(name)
        if all(len(re.findall(r"[.!?](?:\s|$)", answer)) >= 2 for answer in answers):
            multi_sentence.add(name)
    assert {1, 2, 3, 4} <= phrasings
    assert systems == {True, False}
    assert multi_turn and multi_sentence
