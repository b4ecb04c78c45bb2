"""Everything a training run needs before its first step, built from its config: the run folder, the data with its
rewordings and replay pool, the model with its adapters, the optimizer and schedule, and, on --resume, the newest
checkpoint. sft.py runs the loop over what this builds.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from annotune.config import TrainConfig
from annotune.conversation import Conversation
from annotune.errors import AnnotuneError
from annotune.models.identity import identity, resolve_recorded
from annotune.models.loading import load_model, load_tokenizer, resolve_model
from annotune.models.templates import Encoded, ensure_chat_template, stop_token_ids
from annotune.runs import read_run_info
from annotune.train import attention, batching, checkpoint, compiled, inputs, length, paraphrase, replay, rundir
from annotune.train.distributed import Dist
from annotune.train.epochs import Epochs
from annotune.train.model_setup import (
    add_embedding_noise,
    freeze_base_in_bf16,
    make_trainable,
    packing_supported,
    supports_logits_to_keep,
)
from annotune.train.precision import resolve_precision

log = logging.getLogger(__name__)


@dataclass
class Data:
    train: list[Encoded]
    val: list[Encoded]
    train_convs: list[Conversation]
    val_convs: list[Conversation]


@dataclass
class Loop:
    """Everything the optimisation loop needs, built by :func:`build`."""

    cfg: TrainConfig
    dist: Dist
    run_dir: Path
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    data: Data
    precision: str
    packed: bool
    pad_id: int
    logits_to_keep: bool
    steps_per_epoch: int
    total_steps: int
    start_step: int = 0
    best: length.Best | None = None  # with a validation set and keep_best: the best epoch so far
    steps_done: int = 0
    digits: torch.Tensor | None = None  # with --digit-weight: which token ids hold a digit, [vocab] bool
    segment_attention: bool = False  # packed rows attend per conversation (train/attention.py)
    share_start: bool = False  # and hold their conversations' common start once (batching.pack)
    compiled: bool = False  # the decoder layers run compiled (train/compiled.py)
    epochs: Epochs | None = None  # what each epoch trains on (train/epochs.py)


def build(cfg: TrainConfig, dist: Dist) -> Loop:
    """Check the folder and data, make the rewordings and replay pool, load the model and everything the loop
    needs; on --resume, load the newest checkpoint."""
    torch.manual_seed(cfg.seed)
    run_dir, cfg, applied = rundir.resolve(cfg)
    train_convs, val_convs = inputs.read_data(cfg, run_dir)  # invalid data is refused before any model loads
    model_ref = _resumed_model(run_dir) if cfg.resume else resolve_model(cfg.model)
    given = train_convs + val_convs  # the user's chats as given (as `auto` judges them), before rewordings, replay
    if not cfg.resume:  # a resumed run's saved data holds its rewordings and replay pool already
        train_convs = train_convs + _paraphrases(cfg, dist, model_ref, train_convs, val_convs)
        train_convs = train_convs + _replay(cfg, dist, model_ref, train_convs)
    tokenizer = load_tokenizer(model_ref)
    saved_template = (run_dir / "chat_template.jinja").read_text(encoding="utf-8") if cfg.resume else None
    template = ensure_chat_template(tokenizer, saved_template or inputs.read_template(cfg.chat_template))
    data = Data(inputs.encode_all(tokenizer, train_convs, cfg.max_length),
                inputs.encode_all(tokenizer, val_convs, cfg.max_length),
                train_convs, val_convs)
    epochs = Epochs(train_convs, data.train, cfg.replay, cfg.seed, cfg.question_noise, tokenizer, cfg.max_length,
                    cfg.fact_balance, cfg.fact_sheets)
    auto_length = cfg.epochs is None
    if auto_length:  # saved in config.yaml as the number chosen, so a resume trains exactly as long
        facts = paraphrase.teaches_facts(given)
        cfg = cfg.model_copy(update={"epochs": length.auto_epochs(epochs.size, facts)})
    dist.barrier()  # every process has checked the folder before rank 0 replaces it
    if dist.main:
        rundir.create(run_dir, cfg)
    dist.barrier()
    try:
        return _setup_training(cfg, dist, run_dir, model_ref, tokenizer, template, data, epochs, applied,
                               auto_length)
    except BaseException:
        if dist.main and not cfg.resume:  # a set-up that failed leaves no half-made run to trip over
            rundir.remove_unfinished(run_dir)
        raise


def _replay(cfg: TrainConfig, dist: Dist, model_ref, train_convs: list[Conversation]) -> list[Conversation]:
    """The replay pool: the base model's own answers to everyday prompts, of which each epoch trains on
    ``cfg.replay`` of the training chats' number (see replay.py and epochs.py)."""
    prompts = replay.load_prompts()
    count = replay.replay_count(cfg.replay, len(train_convs), len(prompts))
    if count == 0:
        return []
    if dist.main:  # generated once, by one process; the others read the cached answers
        answers = replay.base_answers(model_ref, identity(model_ref), prompts, progress=cfg.progress)
    dist.barrier()
    if not dist.main:
        answers = replay.base_answers(model_ref, identity(model_ref), prompts)
    return replay.replay_pool(prompts, answers, _shared_system_prompt(train_convs))


def _paraphrases(cfg: TrainConfig, dist: Dist, model_ref, train_convs: list[Conversation],
                 val_convs: list[Conversation]) -> list[Conversation]:
    """Copies of the training chats with a question reworded by the base model (see paraphrase.py)."""
    if cfg.paraphrases == 0:
        return []
    dtype = resolve_precision(cfg.precision, dist.device)
    wordings = cfg.paraphrases
    if wordings == paraphrase.AUTO:
        wordings = paraphrase.auto_wordings(train_convs + val_convs, train_convs)

    def added(progress: bool) -> list[Conversation]:
        return paraphrase.paraphrased(train_convs, wordings, paraphrase.base_sampler(
            model_ref, identity(model_ref), cfg.seed, dtype, progress=progress))

    if dist.main:  # generated once, by one process; the others read the cached samples
        made = added(cfg.progress)
        if made or cfg.paraphrases != paraphrase.AUTO:
            log.warning("Training on %d more chats whose question the base model reworded (each fact topped up to %d "
                        "wordings where the kept rewordings allow; --paraphrases 0 turns this off)",
                        len(made), wordings)
    dist.barrier()
    return made if dist.main else added(False)


def _resumed_model(run_dir: Path):
    """The base model the run recorded (checked by identity), not whatever its saved name resolves to today.
    A run with nothing to resume from is refused here, before anything in its folder is written."""
    info = read_run_info(run_dir)
    if "base_model" not in info or not checkpoint.list_checkpoints(run_dir):
        raise AnnotuneError(f"--resume: {run_dir} has no complete checkpoint; start it again with --overwrite")
    return resolve_recorded(info["base_model"], run_dir)


def _setup_training(cfg: TrainConfig, dist: Dist, run_dir: Path, model_ref, tokenizer, template: str,
                    data: Data, epochs: Epochs, applied: list[str], auto_length: bool) -> Loop:
    precision = resolve_precision(cfg.precision, dist.device)
    model = load_model(model_ref, device=dist.device)
    packed = packing_supported(model, dist.device)
    # Measured on CPUs only (docs/benchmarks.md); elsewhere SDPA keeps its block-diagonal mask.
    segment_attention = packed and dist.device == "cpu" and attention.switch_on(model)
    model = make_trainable(model, cfg)
    if cfg.method == "lora" and precision == "bf16":
        freeze_base_in_bf16(model)
    if cfg.neftune:
        add_embedding_noise(model, cfg.neftune)
    per_epoch = _steps_per_epoch(epochs.size, cfg, dist)
    total = per_epoch * cfg.epochs
    optimizer = torch.optim.AdamW(_parameter_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    from transformers import get_cosine_schedule_with_warmup

    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup_steps(cfg.warmup_ratio, total), total)
    if dist.main and not cfg.resume:
        _write_setup_files(run_dir, cfg, model_ref, tokenizer, template, data, epochs, precision, auto_length)
    val_tokens = sum(e.supervised for e in data.val)  # what every epoch's validation accuracy is a share of
    loop = Loop(cfg, dist, run_dir, model, optimizer, scheduler, data, precision, packed,
                tokenizer.pad_token_id, supports_logits_to_keep(model), per_epoch, total,
                best=length.Best(cfg.patience, val_tokens) if cfg.keep_best and data.val else None,
                segment_attention=segment_attention, share_start=segment_attention and attention.shares_starts(model),
                epochs=epochs, digits=digit_tokens(tokenizer, model, dist.device) if cfg.digit_weight != 1 else None)
    compiled.prepare(loop)
    if dist.main and not cfg.resume:
        log.warning("%s", plan(loop, auto_length))
    if dist.enabled:
        # Buffers (rotary tables) are constants: broadcasting them would add a collective to every forward.
        loop.model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.local_rank] if dist.device.startswith("cuda") else None, broadcast_buffers=False)
    if cfg.resume:
        _resume(loop, applied)
    return loop


def digit_tokens(tokenizer, model, device) -> torch.Tensor:
    """Which token ids hold a digit (SmolLM2's and Llama's split numbers into single digits, others into runs)."""
    mask = torch.zeros(unwrap(model).get_output_embeddings().weight.shape[0], dtype=torch.bool)
    for token, index in tokenizer.get_vocab().items():
        if index < len(mask) and any(ch.isdigit() for ch in token):
            mask[index] = True
    return mask.to(device)


def plan(loop: Loop, auto_length: bool) -> str:
    """One line, before the first step, of what the run will do: a large set's run can take hours on a CPU, and
    this says how long it is, why, and what keeps it safe before the progress bar's estimate settles."""
    cfg, size = loop.cfg, loop.epochs.size
    why = "from the data's size; --epochs N to choose" if auto_length else "--epochs"
    per_step = min(cfg.batch_size * cfg.grad_accum * loop.dist.world, size)  # a set smaller than a step's chats
    parts = [f"Training {size:,} chat{'s' * (size != 1)} an epoch for {cfg.epochs} epoch{'s' * (cfg.epochs != 1)} "
             f"({why}): {loop.total_steps:,} steps of {per_step} chat{'s' * (per_step != 1)}, "
             f"{loop.precision} on {loop.dist.device}"]
    if loop.data.val:
        parts.append(f"validation on {len(loop.data.val):,} chats after each epoch"
                     + (", the best epoch kept" if loop.best is not None else ""))
    if cfg.save_every == "auto" and loop.steps_per_epoch > checkpoint.AUTO_SAVE_STEPS:
        parts.append(f"a checkpoint every {checkpoint.AUTO_SAVE_STEPS} steps and at each epoch's end (--resume "
                     "continues from the newest)")
    return "; ".join(parts)


WARMUP_FLOOR = 5


def warmup_steps(ratio: float, total: int) -> int:
    """--warmup-ratio of the run's optimizer steps, but at least WARMUP_FLOOR (or a quarter of a shorter run):
    Adam's first updates move every weight by about the full lr, and a short run's 5% rounds to no warm-up at all.
    A ratio of 0 means none."""
    if ratio == 0:
        return 0
    return max(int(ratio * total), min(WARMUP_FLOOR, total // 4))


def _parameter_groups(model, cfg: TrainConfig) -> list[dict]:
    """What the optimizer trains, at --lr; with --lora-plus the adapters' B matrices at that many times it (LoRA+:
    B starts at zero, so A's gradients are scaled down by B's small entries, and a faster B evens that out)."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if cfg.method != "lora" or cfg.lora_plus == 1:
        return [{"params": [p for _, p in trainable]}]
    faster = [p for name, p in trainable if ".lora_B." in name]
    rest = [p for name, p in trainable if ".lora_B." not in name]
    return [{"params": rest}, {"params": faster, "lr": cfg.lr * cfg.lora_plus}]


def _steps_per_epoch(n_train: int, cfg: TrainConfig, dist: Dist) -> int:
    return batching.steps_per_epoch(math.ceil(n_train / cfg.batch_size), cfg.grad_accum, dist.world)


def _write_setup_files(run_dir, cfg, model_ref, tokenizer, template, data, epochs, precision, auto_length) -> None:
    from annotune.dataset import write_dataset

    (run_dir / "chat_template.jinja").write_text(template, encoding="utf-8")
    tokenizer.save_pretrained(run_dir / "tokenizer")
    (run_dir / "data").mkdir(exist_ok=True)
    write_dataset(data.train_convs, run_dir / "data" / "train.jsonl", "openai")
    if data.val_convs:
        write_dataset(data.val_convs, run_dir / "data" / "val.jsonl", "openai")
    rundir.write_run_info(
        run_dir, status="training", method=cfg.method, base_model=identity(model_ref), precision=precision,
        examples={"train": epochs.size, "val": len(data.val), "replay": epochs.replay_count,  # per epoch; the pool
                  "paraphrases": sum(paraphrase.is_paraphrase(c) for c in data.train_convs),  # is what the replay
                  "fact_sheets": epochs.sheets.count(), "replay_pool": len(epochs.pool)},  # chats rotate through
        supervised_tokens={"train": epochs.supervised_tokens(0)},
        stop_token_ids=stop_token_ids(tokenizer), default_system=_shared_system_prompt(data.train_convs),
        epochs={"planned": cfg.epochs, "chosen_by": "data size" if auto_length else "--epochs"},
    )


def _shared_system_prompt(convs: list[Conversation]) -> str | None:
    """The system prompt every training conversation starts with, if they share one; chat uses it by default."""
    prompts = {c.messages[0].content if c.messages[0].role == "system" else None for c in convs}
    return prompts.pop() if len(prompts) == 1 else None


def _resume(loop: Loop, applied: list[str]) -> None:
    """Load the newest checkpoint; record the resume (and any applied change) without touching the run's identity:
    its data/, tokenizer, template and run.json's description stay as first written."""
    newest = checkpoint.list_checkpoints(loop.run_dir)[-1]  # there is one: _resumed_model checked
    state = checkpoint.load(newest, unwrap(loop.model), loop.optimizer, loop.scheduler, loop.dist.rank)
    loop.start_step = state["step"]
    if loop.best is not None:
        loop.best.load(loop.run_dir, loop.start_step // loop.steps_per_epoch)
    if not loop.dist.main:
        return
    for change in applied:
        log.warning("Applied on resume: %s", change)
    log.warning("Resuming %s from step %d of %d", loop.run_dir, loop.start_step, loop.total_steps)
    if applied:
        rundir.atomic_write(loop.run_dir / "config.yaml", rundir.saved_config(loop.cfg))
    history = read_run_info(loop.run_dir).get("resumed", [])
    rundir.write_run_info(loop.run_dir, status="training", resumed=[
        *history, {"from_step": loop.start_step, "total_steps": loop.total_steps, "applied": applied}])


def unwrap(model):
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
