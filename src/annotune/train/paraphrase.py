"""Model-made rewordings of the training questions, added as copies of their chats.

A small model taught each fact in two or three fixed wordings answers a new wording with a sibling fact's answer.
More wordings of the same question are the known cure, and the base model can write some: asked in a chat to
reword a question it answers it instead, but as a plain text completion after a few worked rewordings of
unrelated questions (``SHOTS``) it writes other wordings, about half of which keep the meaning. The rest change
it ("What is the annual rate of the Lantern Saver?" from the monthly-fee question) or copy it, so a rewording is
kept only when :func:`keep` finds it safe to train on the original's answer: a question, naming exactly the names
and numbers of the original (none lost, none added), asking for the same kind of thing where its question words
say (:data:`KINDS`), not asked already, and nearer (in shared words) to a training question with the same answer
than to any other question about the same things. Each fact asked fewer than ``--paraphrases`` ways (``auto``:
:data:`WAYS`, where the data asks its facts several ways or asks them as questions) is topped up to that many with
kept rewordings, each a copy of its chat with that one user turn replaced (``meta["source"] == "paraphrase"``),
saved with the run's data.

Samples are drawn per question with a seed from its text and the run's ``--seed``, so they do not depend on the
data's order and another seed is another draw of rewordings (as it is another draw of everything else random in a
run), and are cached under ``$ANNOTUNE_HOME/paraphrase`` per base model and seed: a second run on the same data
generates nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import queue
import re
import statistics
from collections import Counter
from dataclasses import replace
from pathlib import Path

from annotune.conversation import Conversation
from annotune.dataset.split import trained_answers
from annotune.paths import annotune_home
from annotune.train.augment import bare, is_name

log = logging.getLogger(__name__)

AUTO = "auto"  # --paraphrases auto: every fact topped up to WAYS wordings, where the data is a set of facts
WAYS = 6
SOURCE = "paraphrase"  # meta["source"] of an added chat, saved with it in the run's data/train.jsonl
SHOTS = """Rewrite each question in other words. Keep every name and number.

Question: What time does the Riverside Library open on Saturdays?
Same question, other words: On a Saturday, when do the doors of the Riverside Library open?

Question: How much does a return ticket to Oldham cost?
Same question, other words: What is the price of going to Oldham and back?

Question: Can I bring my dog into the Moss Cafe?
Same question, other words: Are dogs allowed inside the Moss Cafe?

Question: How many people can the Lakeside Hall seat?
Same question, other words: What is the seating capacity of the Lakeside Hall?

Question: {question}
Same question, other words:"""
SAMPLING = {"max_new_tokens": 32, "temperature": 0.9, "top_p": 0.95, "stop": ["\n"]}
STOP_WORDS = frozenset("the a an of on in to for is are do does what which how can i my me and at be it with from "
                       "by there".split())
MIN_WORDS = 4
OVERSAMPLE = 3  # samples asked per rewording needed: the filter keeps about two in five
MAX_SAMPLES = 16  # per question
MAX_TOTAL = 4000  # per run, a few minutes of generation on 2 CPU cores: a larger set tops up the fewest-asked facts
MAX_PROMPT = 1024  # tokens of the few-shot prompt with the question: a longer question is not reworded


def names(text: str) -> set[str]:
    """What a question is about: its words that name something (:func:`augment.is_name`; not "I"), without a
    possessive's 's ("Fernhollow's" names Fernhollow)."""
    return {core for i, word in enumerate(text.split())
            if is_name(word, i) and re.split("['\u2019]", core := bare(word))[0] != "I"}


def _same_things(a: frozenset[str], b: frozenset[str]) -> bool:
    """Whether questions naming ``a`` and ``b`` are about the same things: they name the same, or one names more
    of it ("the Sprout plan", "Kestrune Sprout"). Questions that name nothing are so only to each other."""
    return a == b or (bool(a) and bool(b) and (a <= b or b <= a))


# What a question asks for, by its question words; two questions that ask for different kinds of thing are not one
# question ("When does the first train leave?" reworded as "Who is the conductor of the first train?"). How often
# and how long share a kind: "how long until the next train" asks for the frequency.
KINDS = [("person", r"\bwho(m|se)?\b"), ("time", r"\bwhen\b|\bwhat (time|day|date)\b"), ("place", r"\bwhere\b"),
         ("amount", r"\bhow (many|much)\b"), ("span", r"\bhow (often|long)\b"), ("reason", r"\bwhy\b")]


def kind(question: str) -> str | None:
    """What a question asks for (see :data:`KINDS`), or None where its words do not say ("What is the fee?")."""
    return next((name for name, pattern in KINDS if re.search(pattern, question.lower())), None)


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def _words(text: str) -> set[str]:
    return {w.rstrip("s") for w in _norm(text).split() if w not in STOP_WORDS} - {
        n.lower().rstrip("s") for n in names(text)}


def _overlap(a: str, b: str) -> float:
    wa, wb = _words(a), _words(b)
    return len(wa & wb) / max(1, len(wa | wb))


def _by_names(turns: list[tuple[str, str]]) -> dict[frozenset[str], list[tuple[str, str]]]:
    """The (question, answer) pairs by what their questions name."""
    grouped: dict[frozenset[str], list[tuple[str, str]]] = {}
    for pair in turns:
        grouped.setdefault(frozenset(names(pair[0])), []).append(pair)
    return grouped


def _about(by_names: dict[frozenset[str], list[tuple[str, str]]], asked: frozenset[str]) -> list[tuple[str, str]]:
    """The pairs whose questions are about the same things as one that names ``asked``."""
    return [pair for named, pairs in by_names.items() if _same_things(asked, named) for pair in pairs]


def keep(candidate: str, question: str, answer: str, turns: list[tuple[str, str]]) -> bool:
    """Whether a rewording of ``question`` (answered by ``answer``) may train on that answer, given every
    training (question, answer) pair in ``turns``."""
    return _keep(candidate, question, answer, _about(_by_names(turns), frozenset(names(question))))


def is_question(text: str) -> bool:
    """Whether ``text`` is written as a question: the one test a rewording must pass and :func:`asks_questions`
    counts, so ``auto`` rewords only data whose questions could have kept rewordings."""
    return text.endswith("?")


def _keep(candidate: str, question: str, answer: str, same_things: list[tuple[str, str]]) -> bool:
    """:func:`keep`, given the training pairs whose questions name what ``question`` names."""
    if not is_question(candidate) or len(candidate.split()) < MIN_WORDS or _norm(candidate) == _norm(question):
        return False
    if names(question) != names(candidate):  # a name lost, or one added ("Where does it start?" made about a park)
        return False
    asks, reworded = kind(question), kind(candidate)
    if None not in (asks, reworded) and asks != reworded:  # a time asked as a person ("Who is the conductor ...?")
        return False
    scores = [_overlap(candidate, q) for q, _ in same_things]
    top = max(scores)
    # the nearest questions (ties included) must all be this one or give this answer; a follow-up asked in several
    # chats ("What does it cost?") has several answers, and is its own nearest question in each of them
    return top > 0 and all(_norm(q) == _norm(question) or a == answer
                           for (q, a), score in zip(same_things, scores) if score == top)


def _places(convs: list[Conversation]) -> list[tuple[int, int]]:
    """(chat, turn) of every user turn that a trained assistant answer follows."""
    return [(c, t) for c, conv in enumerate(convs) for t in range(len(conv.messages) - 1)
            if conv.messages[t].role == "user" and conv.trains_on(t + 1)]


def auto_wordings(data: list[Conversation], convs: list[Conversation], budget_samples: int = MAX_TOTAL) -> int:
    """``--paraphrases auto``: :data:`WAYS`, or the largest count below it whose samples fit ``budget_samples`` when
    ``convs``, the training chats, are topped up to it (every fact then ends at one level, instead of the first ones
    in the budget's order at six and the rest untouched), where ``data``, the data as given, is a set of facts
    (:func:`teaches_facts`); none for one-off instructions, whose rewordings the filter would drop (a rewording must
    be a question)."""
    if not teaches_facts(data):
        return 0
    return next((w for w in range(WAYS, 1, -1) if _wanted(convs, w)[1] <= budget_samples), 0)


def teaches_facts(data: list[Conversation]) -> bool:
    """Whether ``data``, the data as given, is a set of facts to teach rather than one-off instructions: it asks its
    facts several ways (:func:`asks_facts_several_ways`) or asks them as questions (:func:`asks_questions`, an FAQ).
    Such data gets rewordings from ``auto`` and at least ``length.MIN_FACT_EPOCHS`` epochs."""
    return asks_facts_several_ways(data) or asks_questions(data)


def asks_facts_several_ways(data: list[Conversation]) -> bool:
    """Whether ``data``, the data as given, is a set of facts asked several ways: its median trained answer is given
    in two chats or more (not one-off instructions). Answers are counted one by one, not as a chat's set."""
    answers = [answer for conv in data for answer in trained_answers(conv)]
    chats = Counter(answers)  # answer -> the chats that give it
    return bool(answers) and statistics.median_low(chats[a] for a in answers) >= 2


def asks_questions(data: list[Conversation]) -> bool:
    """Whether most user turns of ``data`` that a trained answer follows are questions (end with "?"): an FAQ that
    asks each fact once, not a set of instructions ("Write a note to ..."), whose rewordings the filter drops."""
    asked = [is_question(data[c].messages[t].content.rstrip()) for c, t in _places(data)]
    return bool(asked) and 2 * sum(asked) > len(asked)


def _wanted(convs: list[Conversation], wordings: int):
    """What topping every fact of ``convs`` up to ``wordings`` ways asks of the base model: per fact, the
    fewest-asked first (then a fixed order from their answers), its places (indices into ``_places(convs)``), the
    rewordings it needs and the samples asked of each of its questions; and the samples in all."""
    fact_of = [trained_answers(conv) for conv in convs]
    ways = Counter(fact_of)  # fact -> the chats that ask it
    by_fact: dict[frozenset[str], list[int]] = {}
    for p, (c, _) in enumerate(_places(convs)):
        by_fact.setdefault(fact_of[c], []).append(p)
    plan = []
    for fact in sorted(by_fact, key=lambda f: (ways[f], sorted(f))):
        ps, need = by_fact[fact], max(0, wordings - ways[fact])
        plan.append((fact, ps, need, min(MAX_SAMPLES, math.ceil(OVERSAMPLE * need / len(ps))) if need else 0))
    return plan, sum(per_place * len(ps) for _, ps, _, per_place in plan)


def paraphrased(convs: list[Conversation], wordings: int, sample_fn,
                budget_samples: int | None = None) -> list[Conversation]:
    """The added chats: each fact (the answers a chat trains on, as fact balance counts them) asked fewer than
    ``wordings`` ways gets kept rewordings (see :func:`keep`) of its questions until it is asked that many ways,
    where the samples allow; each rewording is a copy of its chat with that one turn replaced. The ways a fact is
    asked are counted in ``convs``, the training chats: a fact that lost a way to validation gets one more.

    Topping every fact up to one count, instead of rewording every question the same number of times, keeps the
    facts level: a fact asked four ways and reworded four times per question would be asked a dozen ways against
    a one-way fact's two or three, and a new wording of the one-way fact would go to it. ``sample_fn(counts)``
    returns ``counts[question]`` sampled rewordings per question, in a fixed order; about ``OVERSAMPLE`` times as
    many are asked for as needed, since the filter drops most, and at most ``budget_samples`` (``MAX_TOTAL``)
    in all."""
    if wordings <= 0:
        return []
    budget_samples = MAX_TOTAL if budget_samples is None else budget_samples
    places = _places(convs)
    turns = [(convs[c].messages[t].content, convs[c].messages[t + 1].content) for c, t in places]
    plan, _ = _wanted(convs, wordings)
    need, counts = _sample_counts(plan, turns, wordings, budget_samples)
    drawn = sample_fn(counts) if counts else {}
    by_names = _by_names(turns)
    pools: dict[frozenset[str], list[tuple[str, str]]] = {}  # the pairs about the same things, once per name set

    def about(question: str) -> list[tuple[str, str]]:
        asked = frozenset(names(question))
        if asked not in pools:
            pools[asked] = _about(by_names, asked)
        return pools[asked]

    seen = {_key(conv.messages) for conv in convs}  # a chat the data has already (another phrasing) adds nothing
    added = []
    for fact, ps, _, _ in sorted(plan, key=lambda entry: entry[1][0]):  # in the data's order
        left = need[fact]
        rounds = max((len(drawn.get(turns[p][0], [])) for p in ps), default=0)
        for k in range(rounds if left else 0):  # round-robin over the fact's questions, in sample order
            for p in ps:
                (c, t), (question, answer) = places[p], turns[p]
                options = drawn.get(question, [])
                if left == 0 or k >= len(options):
                    continue
                option = options[k].strip()
                messages = list(convs[c].messages)
                messages[t] = replace(messages[t], content=option)
                if _key(messages) in seen or not _keep(option, question, answer, about(question)):
                    continue
                seen.add(_key(messages))
                added.append(Conversation(messages, {**convs[c].meta, "source": SOURCE}))
                left -= 1
    return added


def _sample_counts(plan, turns, wordings: int, budget_samples: int) -> tuple[dict, dict[str, int]]:
    """How many rewordings each fact still needs, and how many samples to draw per question, within the budget."""
    need: dict[frozenset[str], int] = {}
    counts: dict[str, int] = {}
    budget, cut = budget_samples, 0
    # the facts asked fewest ways first (then a fixed order from their answers): a set too large for the budget
    # tops up those that need it most
    for fact, ps, needed, per_place in plan:
        need[fact] = needed
        if per_place * len(ps) > budget:
            need[fact], per_place, cut = 0, 0, cut + 1
        budget -= per_place * len(ps)
        for p in ps:
            counts[turns[p][0]] = max(counts.get(turns[p][0], 0), per_place)
    if cut:
        log.warning("%d facts asked fewer than %d ways get no rewordings: topping them up too would take more than "
                    "%d samples from the base model (the facts asked fewest ways went first)", cut, wordings,
                    budget_samples)
    return need, {q: n for q, n in counts.items() if n}


def _key(messages) -> tuple:
    return tuple((m.role, _norm(m.content)) for m in messages)


def is_paraphrase(conv: Conversation) -> bool:
    return conv.meta.get("source") == SOURCE


def _cache_file(base_identity: dict, seed: int) -> Path:
    key = json.dumps({"base": base_identity, "shots": SHOTS, "sampling": SAMPLING, "seed": seed}, sort_keys=True)
    return annotune_home() / "paraphrase" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def _seed(question: str, k: int, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{k}:{question}".encode()).digest()[:4], "big")


def base_sampler(model_ref, base_identity: dict, seed: int, dtype: str = "fp32", progress: bool = False):
    """``sample_fn`` for :func:`paraphrased`: the base model's rewordings through annotune's generation engine,
    cached per base model and ``seed`` (a question's samples depend only on its text, the seed and the sample's
    number, so asking for more samples of a question later generates only the new ones)."""
    from annotune.dataset.files import write_atomically

    def sample(counts: dict[str, int]) -> dict[str, list[str]]:
        cache = _cache_file(base_identity, seed)
        known = json.loads(cache.read_text(encoding="utf-8")) if cache.is_file() else {}
        # [] marks a question too long to reword
        missing = {q: range(len(known.get(q, [])), n) for q, n in sorted(counts.items())
                   if q not in known or 0 < len(known[q]) < n}
        if missing:
            for q, new in _generate(model_ref, missing, seed, dtype, progress).items():
                known[q] = known.get(q, []) + new if new else []
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(cache, [json.dumps(known, ensure_ascii=False, sort_keys=True)])
        return {q: known[q][:n] for q, n in counts.items()}

    return sample


def _generate(model_ref, wanted: dict[str, range], seed: int, dtype: str, progress: bool) -> dict[str, list[str]]:
    """The samples numbered ``wanted[question]`` of each question, drawn with ``seed`` ([] for a question too long
    to reword)."""
    from annotune.generation.config import GenerationConfig
    from annotune.generation.loading import base_spec, load_engine
    from annotune.generation.streams import collect, drain

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(map(len, wanted.values())), desc="question rewordings (cached for later runs)",
                   unit="sample")
    with load_engine(base_spec(model_ref, "base"), max_batch=32, dtype=dtype) as engine:
        served = engine.served("base")
        finished: queue.Queue = queue.Queue()
        jobs: dict[str, list[int]] = {}  # question -> the indices of its samples' results
        prompts: list[tuple[list[int], int]] = []  # (prompt tokens, seed) of each sample, in submission order
        for question, numbers in wanted.items():
            prompt = served.tokenizer.encode(SHOTS.format(question=question))
            jobs[question] = []
            if len(prompt) + SAMPLING["max_new_tokens"] > min(served.context, MAX_PROMPT):
                continue  # a question this long is not reworded
            for k in numbers:
                jobs[question].append(len(prompts))
                prompts.append((prompt, _seed(question, k, seed)))
        results: list = [None] * len(prompts)
        if bar is not None:
            bar.total = len(results)
        done = (lambda i, r: bar.update()) if bar else None
        for index, (prompt, seed) in enumerate(prompts):  # submitting waits for room: count what finished meanwhile
            engine.submit(served, prompt, GenerationConfig(**SAMPLING, seed=seed), collect(finished, index), wait=True)
            drain(finished, results, done, block=False)
        while any(r is None for r in results):
            drain(finished, results, done, block=True)
    if bar is not None:
        bar.close()
    return {q: [results[i].text.strip() for i in indices] for q, indices in jobs.items()}
