"""Supervised fine-tuning recipe: build (prepare.py) -> train -> save.

One readable loop rather than a trainer class: data is validated before any model loads, conversations are packed
without padding, the loss covers assistant tokens only (normalised per optimizer step by the number of supervised
tokens across all micro-batches and processes), and checkpoints make a killed run resumable to the same result.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from annotune.config import TrainConfig
from annotune.errors import TrainingError
from annotune.models.templates import Encoded
from annotune.runs import RunFolder, read_run_info
from annotune.train import attention, batching, checkpoint, compiled, paraphrase, prepare, replay, rundir
from annotune.train.distributed import setup
from annotune.train.metrics import MetricsLog, plot_losses
from annotune.train.model_setup import save_weights
from annotune.train.precision import autocast
from annotune.train.prepare import Loop, unwrap

log = logging.getLogger(__name__)


def train(cfg: TrainConfig) -> Path:
    """Run one training job and return its run folder."""
    dist = setup()
    try:
        loop = prepare.build(cfg, dist)
        _train(loop)
        _save(loop)
        return loop.run_dir
    finally:
        dist.close()


# ---------------------------------------------------------------------------------------------------- train


def _micro_batch(loop: Loop, group: list[Encoded]) -> batching.MicroBatch:
    batch = batching.pack(group, loop.share_start) if loop.packed else batching.pad(group, loop.pad_id)
    return batch.to(loop.dist.device)


def _loss_sums(loop: Loop, batch: batching.MicroBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy summed over the batch's supervised positions: the sum trained on (digits weighted
    --digit-weight times) and the plain sum, which is what the run logs."""
    logits = _logits(loop, batch)
    if loop.digits is None:  # summed inside cross_entropy, as before the weight existed (to the last bit)
        plain = F.cross_entropy(logits, batch.targets, reduction="sum")
        return plain, plain
    losses = F.cross_entropy(logits, batch.targets, reduction="none")
    return (losses * torch.where(loop.digits[batch.targets], loop.cfg.digit_weight, 1.0)).sum(), losses.sum()


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
            trained, plain = _loss_sums(loop, batch)
            if not torch.isfinite(trained):
                raise TrainingError(f"the loss became {trained.item()} in step {step_number}; lower --lr "
                                    f"(now {cfg.lr}) or use --precision fp32")
            (trained * weight * dist.world / n_supervised).backward()
        loss_total += plain.item() * weight
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
    model = unwrap(loop.model)  # no DDP wrapper: ranks may hold different numbers of validation batches
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
                    loop.best.save(loop.run_dir, unwrap(loop.model))
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
        checkpoint.finish(loop.run_dir, step, unwrap(loop.model), loop.optimizer, loop.scheduler, state,
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
    model, best = unwrap(loop.model), loop.best
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
