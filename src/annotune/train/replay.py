"""Self-distillation replay: the base model's own answers to everyday prompts, mixed into training.

Fine-tuning a small model on a few hundred domain chats pulls every answer towards the domain, and it forgets
what it knew (capitals, arithmetic, how to boil an egg). Training on a share of conversations whose answers are
the *base model's own* greedy answers to general prompts holds those answers in place: no outside data, and
nothing the base model did not already say. Every prompt's answer goes into the run's pool; each epoch trains on
a share of them in turn (train/epochs.py), so a long run covers the whole pool at the cost of a few. The prompts
ship with annotune (``replay_prompts.jsonl``) and share no question with evaluate's general-knowledge probe, so
the probe still measures what was kept.

Answers are generated once per base model and prompt set (greedy, fp32) and cached under ``$ANNOTUNE_HOME/replay``.
The embedded model's answers to the shipped prompts come with annotune (``replay_answers/``, named by the same key
as the cache, so a changed model, prompt set or answer length finds none there and generates its own); `make
replay-answers` writes them again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from annotune.conversation import Conversation, Message
from annotune.dataset.files import read_jsonl, write_atomically
from annotune.paths import annotune_home

PROMPTS = Path(__file__).with_name("replay_prompts.jsonl")
SHIPPED = Path(__file__).with_name("replay_answers")
SOURCE = "replay"  # meta["source"] of a replay chat, saved with it in the run's data/train.jsonl
MAX_NEW_TOKENS = 96  # replay answers: long enough to keep the base's style, short enough to generate quickly


def load_prompts(path: Path = PROMPTS) -> list[dict]:
    """The replay prompts: ``{"id", "prompt"}`` per line."""
    return read_jsonl(path)


def is_replay(conv: Conversation) -> bool:
    return conv.meta.get("source") == SOURCE


def replay_count(share: float, n_train: int, available: int) -> int:
    """How many replay conversations an epoch adds to ``n_train`` domain ones: ``share`` of them, at most every
    prompt."""
    return min(available, round(share * n_train)) if share > 0 else 0


def _cache_file(base_identity: dict, prompts: list[dict]) -> Path:
    key = json.dumps({"base": base_identity, "prompts": prompts, "max_new_tokens": MAX_NEW_TOKENS}, sort_keys=True)
    return annotune_home() / "replay" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.jsonl"


def base_answers(model_ref, base_identity: dict, prompts: list[dict], progress: bool = False) -> list[str]:
    """The base model's greedy answer to every prompt (cached per base model and prompt set)."""
    cache = _cache_file(base_identity, prompts)
    for known in (cache, SHIPPED / cache.name):
        if known.is_file():
            rows = read_jsonl(known)
            if [r["id"] for r in rows] == [p["id"] for p in prompts]:
                return [r["answer"] for r in rows]
    answers = generate_answers(model_ref, prompts, progress)
    _write(cache, prompts, answers)
    return answers


def generate_answers(model_ref, prompts: list[dict], progress: bool = False) -> list[str]:
    """The base model's greedy answers, generated now (fp32, the engine's precision on every machine)."""
    from annotune.generation.config import GenerationConfig
    from annotune.generation.loading import base_spec, load_engine

    cfg = GenerationConfig(max_new_tokens=MAX_NEW_TOKENS)
    with load_engine(base_spec(model_ref, "base"), max_batch=32) as engine:
        name = next(iter(engine.models))
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(prompts), desc="replay answers (once per base model)", unit="answer")
        results = engine.generate(name, [[{"role": "user", "content": p["prompt"]}] for p in prompts], cfg,
                                  on_result=(lambda i, r: bar.update()) if bar else None)
        if bar is not None:
            bar.close()
    return [r.text.strip() for r in results]


def ship_embedded_answers() -> Path:
    """Write the embedded model's answers to the shipped prompts into ``replay_answers/`` (`make replay-answers`),
    generated now, whatever the cache holds; older shipped files are removed."""
    from annotune.models.identity import identity
    from annotune.models.loading import EMBEDDED_DEFAULT, resolve_model

    model_ref = resolve_model(EMBEDDED_DEFAULT)
    prompts = load_prompts()
    target = SHIPPED / _cache_file(identity(model_ref), prompts).name
    answers = generate_answers(model_ref, prompts, progress=True)
    for old in SHIPPED.glob("*.jsonl"):
        old.unlink()
    _write(target, prompts, answers)
    return target


def _write(path: Path, prompts: list[dict], answers: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, [json.dumps({"id": p["id"], "answer": a}, ensure_ascii=False) + "\n"
                            for p, a in zip(prompts, answers)])


def replay_pool(prompts: list[dict], answers: list[str], system: str | None) -> list[Conversation]:
    """A replay chat per prompt the base model answered (empty answers are skipped), each with the domain's shared
    system prompt if any, so the everyday answers are kept in the setting the tuned model is used in. Each epoch
    trains on its turn of them (train/epochs.py)."""
    convs = []
    for prompt, answer in zip(prompts, answers):
        if not answer:
            continue
        messages = [Message("system", system)] if system else []
        messages += [Message("user", prompt["prompt"]), Message("assistant", answer)]
        convs.append(Conversation(messages, {"id": prompt["id"], "source": SOURCE}))
    return convs
