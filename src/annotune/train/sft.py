"""Supervised fine-tuning recipe: setup -> train -> save.

One readable loop rather than a trainer class: data is validated before any model loads, conversations are packed
without padding, the loss covers assistant tokens only (normalised per optimizer step by the number of supervised
tokens across all micro-batches and processes), and checkpoints make a killed run resumable to the same result.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from annotune.config import TrainConfig
from annotune.conversation import Conversation
from annotune.errors import AnnotuneError, TrainingError
from annotune.models.identity import identity, resolve_recorded
from annotune.models.loading import load_model, load_tokenizer, resolve_model
from annotune.models.templates import Encoded, ensure_chat_template, stop_token_ids
from annotune.runs import RunFolder, read_run_info
from annotune.train import attention, batching, checkpoint, compiled, inputs, length, paraphrase, replay, rundir
from annotune.train.distributed import Dist, setup
from annotune.train.epochs import Epochs
from annotune.train.metrics import MetricsLog, plot_losses
from annotune.train.model_setup import (
    add_embedding_noise,
    freeze_base_in_bf16,
    make_trainable,
    packing_supported,
    save_weights,
    supports_logits_to_keep,
)
from annotune.train.precision import autocast, resolve_precision

log = logging.getLogger(__name__)


@dataclass
class Data:
    train: list[Encoded]
    val: list[Encoded]
    train_convs: list[Conversation]
    val_convs: list[Conversation]


@dataclass
class Loop:
    """Everything the optimisation loop needs, built by setup."""

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
    segment_attention: bool = False  # packed rows attend per conversation (train/attention.py)
    share_start: bool = False  # and hold their conversations' common start once (batching.pack)
    compiled: bool = False  # the decoder layers run compiled (train/compiled.py)
    epochs: Epochs | None = None  # what each epoch trains on (train/epochs.py)


def train(cfg: TrainConfig) -> Path:
    """Run one training job and return its run folder."""
    dist = setup()
    try:
        loop = _setup(cfg, dist)
        _train(loop)
        _save(loop)
        return loop.run_dir
    finally:
        dist.close()


# ---------------------------------------------------------------------------------------------------- setup


def _setup(cfg: TrainConfig, dist: Dist) -> Loop:
    torch.manual_seed(cfg.seed)
    run_dir, cfg, applied = rundir.resolve(cfg)
    train_convs, val_convs = inputs.read_data(cfg, run_dir)  # invalid data is refused before any model loads
    model_ref = _resumed_model(run_dir) if cfg.resume else resolve_model(cfg.model)
    given = train_convs  # the user's chats, before rewordings and replay join them
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
        facts = paraphrase.asks_facts_several_ways(given)
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
    """The base model the run recorded (checked by identity), not whatever its saved name resolves to today."""
    info = read_run_info(run_dir)
    if "base_model" not in info:
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
                epochs=epochs)
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


def plan(loop: Loop, auto_length: bool) -> str:
    """One line, before the first step, of what the run will do: a large set's run can take hours on a CPU, and
    this says how long it is, why, and what keeps it safe before the progress bar's estimate settles."""
    cfg, size = loop.cfg, loop.epochs.size
    why = "from the data's size; --epochs N to choose" if auto_length else "--epochs"
    parts = [f"Training {size:,} chats an epoch for {cfg.epochs} epoch{'s' * (cfg.epochs != 1)} ({why}): "
             f"{loop.total_steps:,} steps of {cfg.batch_size * cfg.grad_accum * loop.dist.world} chats, "
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
    found = checkpoint.list_checkpoints(loop.run_dir)
    if not found:
        raise AnnotuneError(f"--resume: {loop.run_dir} has no complete checkpoint; start it again with --overwrite")
    state = checkpoint.load(found[-1], _unwrap(loop.model), loop.optimizer, loop.scheduler, loop.dist.rank)
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


def _unwrap(model):
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


# ---------------------------------------------------------------------------------------------------- train


def _micro_batch(loop: Loop, group: list[Encoded]) -> batching.MicroBatch:
    batch = batching.pack(group, loop.share_start) if loop.packed else batching.pad(group, loop.pad_id)
    return batch.to(loop.dist.device)


def _loss_sum(loop: Loop, batch: batching.MicroBatch, model=None) -> torch.Tensor:
    """Summed cross-entropy over the batch's supervised positions."""
    return F.cross_entropy(_logits(loop, batch, model), batch.targets, reduction="sum")


def _logits(loop: Loop, batch: batching.MicroBatch, model=None) -> torch.Tensor:
    """fp32 logits at the batch's supervised positions, [supervised, vocab]."""
    model = model or loop.model
    kwargs = dict(input_ids=batch.input_ids, position_ids=batch.position_ids, attention_mask=batch.attention_mask,
                  use_cache=False)
    if loop.segment_attention and batch.segments is not None:
        kwargs["packed_segments"] = batch.segments
    with autocast(loop.precision, loop.dist.device):
        if loop.logits_to_keep and batch.input_ids.shape[0] == 1:
            logits = model(**kwargs, logits_to_keep=batch.keep).logits[0]
        else:
            logits = model(**kwargs).logits.flatten(0, 1)[batch.keep]
    return logits.float()


def _train_step(loop: Loop, groups: list, step_in_epoch: int, step_number: int) -> dict:
    cfg, dist = loop.cfg, loop.dist
    slots = batching.step_slots(groups, step_in_epoch, cfg.grad_accum, dist.world, dist.rank)
    first = step_in_epoch * cfg.grad_accum * dist.world
    step_groups = groups[first:first + cfg.grad_accum * dist.world]
    # Every process knows every group, so the step's global token counts need no communication.
    n_supervised = sum(e.supervised for g in step_groups for e in g)
    n_tokens = sum(len(e.input_ids) for g in step_groups for e in g)
    loss_total = 0.0
    for k, (index, weight) in enumerate(slots):
        batch = _micro_batch(loop, groups[index])
        sync = contextlib.nullcontext() if (not dist.enabled or k == len(slots) - 1) else loop.model.no_sync()
        with sync:
            loss_sum = _loss_sum(loop, batch)
            if not torch.isfinite(loss_sum):
                raise TrainingError(f"the loss became {loss_sum.item()} in step {step_number}; lower --lr "
                                    f"(now {cfg.lr}) or use --precision fp32")
            (loss_sum * weight * dist.world / n_supervised).backward()
        loss_total += loss_sum.item() * weight
    grad_norm = 0.0
    if cfg.max_grad_norm > 0:
        params = [p for p in loop.model.parameters() if p.requires_grad]
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
    loop.optimizer.step()
    loop.scheduler.step()
    loop.optimizer.zero_grad(set_to_none=True)
    (loss_global,) = dist.sum(loss_total)
    return {"loss": loss_global / n_supervised, "grad_norm": grad_norm, "tokens": n_tokens, "supervised": n_supervised}


VALIDATION_BAR = 50  # validation batches from which validating shows its own progress bar (a 30,000-chat set's
# 3,000 validation chats take minutes on a CPU, and the training bar would stand still meanwhile)


@torch.no_grad()
def evaluate_loss(loop: Loop) -> tuple[float, float] | None:
    """Mean cross-entropy per supervised token on the validation set, and the share of those tokens the model
    would pick itself (teacher-forced argmax), sharded over processes."""
    if not loop.data.val:
        return None
    model = _unwrap(loop.model)  # no DDP wrapper: ranks may hold different numbers of validation batches
    model.eval()
    groups = batching.epoch_batches(loop.data.val, loop.cfg.batch_size, 0, 0, shuffle=False)
    loss, right, count = 0.0, 0, 0
    mine = groups[loop.dist.rank::loop.dist.world]
    bar = _progress(loop, len(mine), "validating", "batch", leave=False) if len(mine) >= VALIDATION_BAR else None
    with compiled.uncompiled():
        for group in mine:
            batch = _micro_batch(loop, group)
            logits = _logits(loop, batch, model)
            loss += F.cross_entropy(logits, batch.targets, reduction="sum").item()
            right += int((logits.argmax(-1) == batch.targets).sum())
            count += batch.supervised
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    model.train()
    loss, right, count = loop.dist.sum(loss, right, count)
    return loss / count, right / count


def _train(loop: Loop) -> None:
    cfg, dist = loop.cfg, loop.dist
    metrics = MetricsLog(loop.run_dir, loop.start_step if cfg.resume else None) if dist.main else None
    bar = _progress(loop, loop.total_steps, "training", "step", initial=loop.start_step)
    loop.model.train()
    step, started, tokens_done = loop.start_step, time.perf_counter(), 0
    try:
        for epoch in range(step // loop.steps_per_epoch, cfg.epochs):
            groups = batching.epoch_batches(loop.epochs.examples(epoch), cfg.batch_size, cfg.seed, epoch)
            for step_in_epoch in range(step - epoch * loop.steps_per_epoch, loop.steps_per_epoch):
                result = compiled.step(loop, functools.partial(_train_step, loop, groups, step_in_epoch, step + 1),
                                       step + 1)
                step += 1
                tokens_done += result["tokens"]
                elapsed = time.perf_counter() - started
                row = {"step": step, "epoch": round(step / loop.steps_per_epoch, 4), "loss": result["loss"],
                       "lr": loop.scheduler.get_last_lr()[0], "grad_norm": result["grad_norm"],
                       "tokens_per_s": tokens_done / elapsed}
                if _after_step(loop, metrics, bar, row, epoch_end=step_in_epoch == loop.steps_per_epoch - 1):
                    return
    finally:
        loop.steps_done = step
        if bar is not None:
            bar.close()
        if metrics is not None:
            metrics.close()


def _after_step(loop: Loop, metrics: MetricsLog | None, bar, row: dict, epoch_end: bool) -> bool:
    """Validate, log, checkpoint; True when training should stop early."""
    cfg, step = loop.cfg, row["step"]
    if epoch_end or (cfg.eval_every and step % cfg.eval_every == 0):
        val = evaluate_loss(loop)
        if val is not None:
            row["val_loss"], row["val_accuracy"] = val
            if epoch_end and loop.best is not None:
                epoch = step // loop.steps_per_epoch
                if loop.best.update(epoch, row["val_accuracy"], row["val_loss"]) and loop.dist.main:
                    loop.best.save(loop.run_dir, _unwrap(loop.model))
    if metrics is not None and (step % cfg.log_every == 0 or "val_loss" in row or step == loop.total_steps):
        metrics.write(row)
    if bar is not None:
        bar.update(1)
        post = {"epoch": f"{row['epoch']:.2f}", "loss": f"{row['loss']:.4f}", "tok/s": f"{row['tokens_per_s']:.0f}"}
        if "val_loss" in row:
            bar.val = f"{row['val_loss']:.4f}", f"{row['val_accuracy']:.1%}"
        if getattr(bar, "val", None) is not None:
            post["val"], post["val_acc"] = bar.val
        bar.set_postfix(post, refresh=False)
    if checkpoint.due(cfg.save_every, step, loop.steps_per_epoch, epoch_end):
        _checkpoint(loop, step)
    stop = epoch_end and loop.best is not None and loop.best.stop and step < loop.total_steps
    if stop and loop.dist.main:
        log.warning("Stopping early after epoch %d: validation accuracy has stayed clearly below its best (%.1f%%) "
                    "for %d epochs (keeping epoch %d, %.1f%%)", step // loop.steps_per_epoch, 100 * loop.best.peak,
                    loop.best.since, loop.best.epoch, 100 * loop.best.accuracy)
    return stop


def _checkpoint(loop: Loop, step: int) -> None:
    dist = loop.dist
    staging = checkpoint.staging_dir(loop.run_dir, step)
    if dist.main:
        staging.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    checkpoint.write_rank_rng(staging, dist.rank)
    dist.barrier()
    if dist.main:
        state = {"step": step, "epoch": step / loop.steps_per_epoch, "total_steps": loop.total_steps}
        checkpoint.finish(loop.run_dir, step, _unwrap(loop.model), loop.optimizer, loop.scheduler, state,
                          loop.cfg.keep_checkpoints)
    dist.barrier()


def _progress(loop: Loop, total: int, desc: str, unit: str, **kwargs):
    """A progress bar on the main process with --progress (training's, validation's), else None."""
    if not (loop.dist.main and loop.cfg.progress):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, **kwargs)


# ---------------------------------------------------------------------------------------------------- save


def _save(loop: Loop) -> None:
    if not loop.dist.main:
        return
    model, best = _unwrap(loop.model), loop.best
    last_epoch = loop.steps_done // loop.steps_per_epoch
    if best is not None and best.epoch is not None and best.epoch != last_epoch:
        best.restore(loop.run_dir, model)
        log.warning("Saving the weights of epoch %d, the last level with the best on validation (%.1f%% answer "
                    "tokens right, best %.1f%%, loss %.4f)", best.epoch, 100 * best.accuracy, 100 * best.peak,
                    best.loss)
    attention.switch_off(model)
    if loop.compiled:  # the model goes back as written (a caller may use it, in eval mode, after train)
        compiled.uncompile(model)
    save_weights(model, loop.run_dir, loop.cfg.method)
    router = _save_router(loop, model) if loop.cfg.method == "lora" else None
    metrics_file = loop.run_dir / "metrics.jsonl"
    rows = MetricsLog.read_rows(metrics_file)
    train_losses = [r["loss"] for r in rows if "loss" in r]
    val_losses = [r["val_loss"] for r in rows if "val_loss" in r]
    plot_losses(metrics_file, loop.run_dir / "loss.png")
    rundir.write_run_info(loop.run_dir, status="complete", steps=loop.steps_done,
                          final={"train_loss": train_losses[-1] if train_losses else None,
                                 "val_loss": val_losses[-1] if val_losses else None},
                          epochs={**read_run_info(loop.run_dir).get("epochs", {}), "trained": last_epoch},
                          best=best.summary() if best is not None else None, router=router)
    if best is not None:
        best.discard(loop.run_dir)


def _save_router(loop: Loop, model) -> dict | None:
    """router.safetensors: which requests the adapter answers when served (generation/routing.py)."""
    from annotune.generation import routing

    # the team's questions: not the replayed everyday chats, nor the base model's rewordings, some of which drift
    # towards everyday questions and would pull those to the adapter
    convs = [c for c in [*loop.data.train_convs, *loop.data.val_convs]
             if not replay.is_replay(c) and not paraphrase.is_paraphrase(c)]
    training = model.training
    model.eval()
    with model.disable_adapter(), autocast(loop.precision, loop.dist.device):
        router = routing.build(model, RunFolder(loop.run_dir).tokenizer(), convs,
                               [p["prompt"] for p in replay.load_prompts()], loop.dist.device, loop.cfg.seed)
    model.train(training)
    router.save(loop.run_dir)
    return {"layer": router.layer, "training_questions": len(router.domain), "everyday_prompts": len(router.general)}
