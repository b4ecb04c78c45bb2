"""Fact sheets: every epoch, each subject's facts answered together in one chat, in a new order.

A fact asked one or two ways is learnt as "this wording, then this value": asked in a new wording, or as a
follow-up that names its subject only in an earlier turn, the tuned model starts the right sentence ("The Moss
Courier moves up to") and finishes it with a better-drilled subject's value. A fact sheet trains the same answer
sentences after a question that names only the subject ("Tell me about the Moss Courier."), each one after the
subject's other facts in an order drawn anew every epoch, so the value follows from the subject named in the
sentence itself, not from one question's words.

A chat's subject is the longest run of consecutive names (capitalised words past the first, words with a digit,
identifiers: what paraphrase.names calls a name) in its first user turn that has any, and a name that ends exactly
one longer one is that subject ("Sprout" of "Kestrune Sprout"); chats with the same subject and at least two
different answers make its sheets, of at most ``size`` facts each. Answers and system prompts are used as written; a
sheet is fixed by (seed, epoch, subject), so a resumed run and every DDP process see the same chats.
"""

from __future__ import annotations

import random
import re

from annotune.conversation import Conversation, Message
from annotune.models.templates import IGNORE, Encoded, encode, render
from annotune.train.augment import bare
from annotune.train.paraphrase import names

SOURCE = "fact-sheet"  # meta["source"] of a sheet (never saved: sheets are made anew each epoch)
QUESTIONS = ("Tell me about {}.", "What should I know about {}?", "What can you tell me about {}?",
             "Give me the facts about {}.")


def subject(text: str) -> str:
    """The longest run of consecutive names in ``text`` (the first such run on a tie), or "" if none."""
    found = names(text)
    best: list[str] = []
    run: list[str] = []
    for word in map(bare, text.split()):  # the Lantern Warden's cost: the Lantern Warden
        run = run + [word] if word in found else []
        if len(run) > len(best):
            best = run
    return " ".join(best)


def _subject_of(conv: Conversation) -> str:
    return next((s for m in conv.messages if m.role == "user" and (s := subject(m.content))), "")


class FactSheets:
    """The subjects of ``convs`` (the training chats, replay excluded) with their distinct trained answers."""

    def __init__(self, convs: list[Conversation], size: int, fits=lambda conv: True):
        self.size = size
        self.subjects: dict[str, tuple[list[str], list[Message]]] = {}
        if size < 1:
            return
        named = [(conv, _subject_of(conv)) for conv in convs]
        merged = _merged({name for _, name in named if name})
        for conv, name in named:
            if not name:
                continue
            name = merged.get(name, name)
            answers, system = self.subjects.setdefault(name, ([], [m for m in conv.messages if m.role == "system"]))
            seen = {" ".join(a.split()).lower() for a in answers}
            for i, m in enumerate(conv.messages):
                if conv.trains_on(i) and " ".join(m.content.split()).lower() not in seen:
                    answers.append(m.content)
                    seen.add(" ".join(m.content.split()).lower())
        # a subject whose longest sheet would not fit (``fits``: --max-length) gets none
        self.subjects = {k: v for k, v in self.subjects.items() if len(v[0]) >= 2 and fits(self._longest(k, *v))}

    def _longest(self, name: str, answers: list[str], system: list[Message]) -> Conversation:
        """The longest sheet ``name`` can get: its longest question with its longest answers in one sheet."""
        longest = sorted(answers, key=len, reverse=True)[:max(_chunks(len(answers), self.size))]
        return self._sheet(name, max(QUESTIONS, key=len), longest, system)

    @staticmethod
    def _sheet(name: str, question: str, answers: list[str], system: list[Message]) -> Conversation:
        messages = [*system, Message("user", question.format(f"the {name}" if " " in name else name)),
                    Message("assistant", " ".join(answers))]
        context, start = [], 0
        for answer in answers:  # each fact's opening, from the space before it (the first's from its start)
            context.append((max(start - 1, 0), start + _opening(answer, name)))
            start += len(answer) + 1
        return Conversation(messages, {"source": SOURCE, "context": context})

    def count(self) -> int:
        """Sheets per epoch (the same every epoch)."""
        return sum(len(_chunks(len(answers), self.size)) for answers, _ in self.subjects.values())

    def epoch(self, seed: int, epoch: int) -> list[Conversation]:
        out = []
        for name, (answers, system) in sorted(self.subjects.items()):
            rng = random.Random(f"sheet:{seed}:{epoch}:{name}")
            order = rng.sample(answers, len(answers))
            start = 0
            for length in _chunks(len(order), self.size):
                out.append(self._sheet(name, rng.choice(QUESTIONS), order[start:start + length], system))
                start += length
        return out


def _merged(names: set[str]) -> dict[str, str]:
    """A short name that ends exactly one longer name is the same subject ("Sprout" and "Kestrune Sprout"); it
    maps to the longer one. Ending two or more ("Saver" of "Lantern Saver" and "Harbour Saver"), it stays apart."""
    out = {}
    for short in names:
        longer = [n for n in names if n.endswith(" " + short)]
        if len(longer) == 1:
            out[short] = longer[0]
    return out


def _chunks(n: int, size: int) -> list[int]:
    """``n`` facts in as few sheets of at most ``size`` as can hold them, as even as can be."""
    sheets = -(-n // size)
    return [n // sheets + (1 if k < n % sheets else 0) for k in range(sheets)]


def _opening(answer: str, name: str) -> int:
    """Characters of ``answer`` that say which fact it is: through the subject's name and the word after it
    ("Recruiting the Moss Courier costs", "At peak times a Bramble Line train"), or up to the first number outside
    the name where that comes sooner ("You need at least" in "You need at least £40 to open the Harbour Current
    Account."). The name may be shortened to its last words ("the Sprout plan" for the subject "Kestrune Sprout").
    All of the answer when it has neither, so nothing of it trains."""
    span = _named(answer, name)
    ends = [span[1] + re.match(r"\s*\S*", answer[span[1]:]).end()] if span else []
    number = next((m.start() for m in re.finditer(r"\S*\d\S*", answer)
                   if not (span and span[0] <= m.start() < span[1])), None)
    if number is not None:  # up to the word before it: the token that starts with the space holds the value
        ends.append(len(answer[:number].rstrip()))
    return min(ends) if ends else len(answer)


def _named(answer: str, name: str) -> tuple[int, int] | None:
    """Where ``answer`` names the subject, by its whole name or failing that its last words (longest first)."""
    words = name.split()
    for k in range(len(words)):
        found = re.search(r"(?<!\w)" + re.escape(" ".join(words[k:])) + r"(?!\w)", answer)
        if found:
            return found.span()
    return None


def encode_sheet(tokenizer, conv: Conversation) -> Encoded:
    """A sheet's tokens, trained on its answer except each fact's opening (``context``).

    Trained on whole, a sheet would teach which fact follows which: after "... the gap is longer" comes the first
    train, so a new question about the gap got the first train's time. Its first fact's opening, trained after a
    question that names only the subject, would teach that any fact may answer a question about the subject: a
    question about the gap after a missed train got "The next Bramble Line train leaves at 5:12". With every opening
    left out of the loss, a sheet trains each fact's values after its own opening and nothing about which fact
    answers what; choosing the fact is left to the user's own chats."""
    encoded = encode(tokenizer, conv)
    text = render(tokenizer, conv.as_template_input())
    answer = conv.messages[-1].content
    at = text.rfind(answer.strip()) - (len(answer) - len(answer.lstrip()))  # a template may strip the answer
    if text.rfind(answer.strip()) < 0:  # a template that rewrites answers: the whole sheet trains, as a chat does
        return encoded
    spans = [(at + s, at + e) for s, e in conv.meta["context"]]
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    targets = [IGNORE if any(s <= offsets[t + 1][0] < e for s, e in spans) else target
               for t, target in enumerate(encoded.targets[:-1])] + encoded.targets[-1:]
    return Encoded(encoded.input_ids, targets)


def is_sheet(conv: Conversation) -> bool:
    return conv.meta.get("source") == SOURCE

