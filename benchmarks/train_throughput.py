"""Compare annotune's trainer with TRL's SFTTrainer: same data, model, LoRA, hyperparameters and precision.

    ANNOTUNE_HOME=.cache/annotune python benchmarks/train_throughput.py [--data examples/support/train.jsonl]
        [--model smollm2-135m] [--epochs 1] [--lr 1e-3] [--batch-size 4] [--lora-r 32] [--lora-alpha 64]
        [--max-length 256] [--precision auto|bf16|fp32] [--limit N] [--val-size 0.1] [--seed 42] [--json OUT.json]

The data is read and split once by annotune; both trainers get the same train and validation conversations (TRL as
a conversational prompt/completion dataset: prompt = the messages before the final answer, completion = the answer).
Both use completion-only loss, LoRA on all linear layers, AdamW, a cosine schedule with annotune's warmup share and
gradient clipping 1.0; TRL otherwise keeps its defaults: no packing (rows padded to the longest), gradient
checkpointing on (--no-trl-gradient-checkpointing turns it off), fused AdamW. Each trainer runs in its own process.

Prints the machine's measured matmul peak (bf16 and fp32), then per trainer: tokens per second of training (all
tokens of the training conversations, x epochs) and model FLOPs utilisation, MFU = tokens computed/s x 4 x N / peak
(LoRA costs about 4 x N FLOP per token for N frozen parameters: forward and the activation gradients; the peak of
the precision trained in; annotune computes the start its packed chats share once a row, so it counts fewer tokens
than the data holds); the whole process's wall time and throughput (interpreter start, imports, model loading,
training and saving the adapter: what a user waits for; annotune's run also builds its router and draws its loss
plot, and the seconds those take are printed apart; every trainer first runs once, untimed, on 8 chats, so the
first one timed does not pay alone for a cold disk cache); supervised answer tokens per second of training (annotune's
count of the training set x epochs, the same numerator for both); training wall time (model loading, data
preparation and saving excluded, and for annotune its epoch-end validation and checkpoints, shown apart); the worker's peak RSS at the end of training; the
validation loss measured afterwards the same way for both (mean cross-entropy per supervised token under annotune's
encoding). Then the throughput ratio (annotune / TRL) and the validation loss difference.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRAINERS = ("annotune", "trl")
WARM_UP_CHATS = 8
# annotune with one speed lever changed, to measure what it buys side by side (--variants, --variant NAME)
VARIANTS = ("annotune-autocast-base",  # frozen base weights left in fp32 and cast by autocast on every step
            "annotune-masked-attention",  # packed rows through SDPA's block-diagonal mask, not per conversation
            "annotune-torch-dropout",  # PEFT's nn.Dropout on the adapters' inputs (differs with --lora-dropout > 0)
            "annotune-compiled",  # decoder layers compiled (--compile on); its warm-up run fills inductor's cache
            "annotune-unshared-start")  # every packed chat's template and system prompt computed, not one per row


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="examples/support/train.jsonl")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=4, help="train's default (default: 4)")
    p.add_argument("--lora-r", type=int, default=32)
    p.add_argument("--lora-alpha", type=int, default=64)
    p.add_argument("--lora-dropout", type=float, default=0.0)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    p.add_argument("--limit", type=int, help="use only the first N conversations")
    p.add_argument("--val-size", type=float, default=0.1, help="validation share (0-1) or count (>=1)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--trl-gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True,
                   help="TRL's SFTConfig default is on (default: on)")
    # Internal: how the parent starts one worker.
    p.add_argument("--variants", action="store_true",
                   help=f"also run {', '.join(VARIANTS)} (annotune with a speed lever changed)")
    p.add_argument("--variant", action="append", choices=VARIANTS, default=[], help="also run this one (repeatable)")
    p.add_argument("--worker", choices=TRAINERS + VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--train-file", help=argparse.SUPPRESS)
    p.add_argument("--val-file", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------------- shared


def load_encoder(model: str):
    """The tokenizer both trainers use, with the chat template annotune trains with."""
    from annotune.models.loading import load_tokenizer, resolve_model
    from annotune.models.templates import ensure_chat_template

    tokenizer = load_tokenizer(resolve_model(model))
    ensure_chat_template(tokenizer)
    return tokenizer


def supervised_tokens(tokenizer, convs) -> int:
    from annotune.models.templates import encode

    return sum(encode(tokenizer, conv).supervised for conv in convs)


def validation_loss(model, tokenizer, convs, precision: str) -> float:
    """Mean cross-entropy per supervised answer token, one unpadded conversation at a time (annotune's encoding)."""
    import torch
    import torch.nn.functional as F

    from annotune.models.templates import IGNORE, encode
    from annotune.train.precision import autocast

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for conv in convs:
            enc = encode(tokenizer, conv)
            ids = torch.tensor([enc.input_ids], device=device)
            with autocast(precision, str(device)):
                logits = model(input_ids=ids, use_cache=False).logits[0]
            targets = torch.tensor(enc.targets, device=device)
            total += F.cross_entropy(logits.float(), targets, ignore_index=IGNORE, reduction="sum").item()
            count += enc.supervised
    model.train(was_training)
    return total / count


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# ---------------------------------------------------------------------------------------------------- workers


def run_annotune(args: argparse.Namespace, workdir: Path) -> dict:
    """annotune's train(), with its optimisation loop timed apart from setup, epoch-end validation and checkpoints."""
    from annotune.config import TrainConfig
    from annotune.train import sft

    seen = {"eval_s": 0.0, "checkpoint_s": 0.0, "router_s": 0.0, "loss_plot_s": 0.0, "computed_tokens": 0}
    original_loop, original_eval, original_checkpoint = sft._train, sft.evaluate_loss, sft._checkpoint
    original_loss_sums = sft._loss_sums

    def loss_sums(state, batch):  # the training step's rows: tokens the layers computed (a shared start once)
        seen["computed_tokens"] += batch.tokens
        return original_loss_sums(state, batch)
    original_router, original_plot = sft._save_router, sft.plot_losses

    def timed(function, key):  # its seconds added up in seen[key]
        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                seen[key] += time.perf_counter() - start
        return call

    def loop(state):
        seen["loop"] = state
        start = time.perf_counter()
        original_loop(state)
        seen["loop_s"] = time.perf_counter() - start
        seen["peak_rss_mib"] = peak_rss_mib()

    def evaluate(state):
        start = time.perf_counter()
        seen["internal_val_loss"] = original_eval(state)
        seen["eval_s"] += time.perf_counter() - start
        return seen["internal_val_loss"]

    sft._train, sft.evaluate_loss, sft._checkpoint = loop, evaluate, timed(original_checkpoint, "checkpoint_s")
    sft._loss_sums = loss_sums
    # what annotune's run makes beyond the adapter, which TRL does not
    sft._save_router, sft.plot_losses = timed(original_router, "router_s"), timed(original_plot, "loss_plot_s")
    cfg = TrainConfig(data=args.train_file, val_data=args.val_file, format="openai", out=str(workdir / "run"),
                      overwrite=True, progress=False, method="lora", model=args.model, epochs=args.epochs,
                      lr=args.lr, batch_size=args.batch_size, max_length=args.max_length, lora_r=args.lora_r,
                      lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, lora_targets="all-linear",
                      precision=args.precision, seed=args.seed, replay=0, neftune=0, question_noise=0,
                      fact_balance=1, paraphrases=0,  # the same work as TRL: every chat once, as written
                      lora_plus=1,  # and the same optimisation: TRL trains A and B at one --lr
                      compile="on" if args.worker == "annotune-compiled" else "auto")
    start = time.perf_counter()
    sft.train(cfg)
    call_s = time.perf_counter() - start
    train_s = seen["loop_s"] - seen["eval_s"] - seen["checkpoint_s"]
    return {"model": seen["loop"].model, "train_s": train_s, "peak_rss_mib": seen["peak_rss_mib"],
            "extra": {"loop_s": seen["loop_s"], "epoch_end_eval_s": seen["eval_s"],
                      "checkpoint_s": seen["checkpoint_s"], "whole_train_call_s": call_s,
                      "router_s": seen["router_s"], "loss_plot_s": seen["loss_plot_s"],
                      "packed": seen["loop"].packed, "internal_val_loss": seen.get("internal_val_loss"),
                      "computed_tokens": seen["computed_tokens"]}}


def prompt_completion_rows(convs) -> list[dict]:
    rows = []
    for conv in convs:
        messages = conv.as_template_input()
        if messages[-1]["role"] != "assistant":
            raise SystemExit(f"{conv.meta.get('id', conv.meta.get('line'))}: the last message is not an answer")
        rows.append({"prompt": messages[:-1], "completion": messages[-1:]})
    return rows


def run_trl(args: argparse.Namespace, workdir: Path) -> dict:
    """TRL's SFTTrainer on the same conversations; only trainer.train() is timed."""
    import datasets
    import torch
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from annotune.config import TrainConfig
    from annotune.dataset import load_valid
    from annotune.models.loading import load_model, resolve_model

    datasets.disable_progress_bars()
    defaults = TrainConfig.model_fields
    train_convs = load_valid(args.train_file, "openai")
    total_steps = math.ceil(len(train_convs) / args.batch_size) * args.epochs
    config = SFTConfig(
        output_dir=str(workdir / "trl"), per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1,
        num_train_epochs=args.epochs, learning_rate=args.lr, lr_scheduler_type="cosine",
        warmup_steps=int(defaults["warmup_ratio"].default * total_steps),  # annotune's rounding (down)
        weight_decay=defaults["weight_decay"].default, max_grad_norm=defaults["max_grad_norm"].default,
        max_length=args.max_length, bf16=args.precision == "bf16", fp16=False, completion_only_loss=True,
        # activation_checkpointing is transformers 5's name for TRL's gradient_checkpointing (TRL default: on)
        activation_checkpointing=args.trl_gradient_checkpointing, logging_strategy="no", save_strategy="no",
        eval_strategy="no", report_to="none", disable_tqdm=True, seed=args.seed,
        use_cpu=not torch.cuda.is_available())  # transformers refuses bf16 on a CPU unless told it is one
    lora = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                      target_modules="all-linear", task_type="CAUSAL_LM", bias="none")
    rows = datasets.Dataset.from_list(prompt_completion_rows(train_convs))
    trainer = SFTTrainer(model=load_model(resolve_model(args.model)), args=config, train_dataset=rows,
                         processing_class=load_encoder(args.model), peft_config=lora)
    start = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - start
    rss = peak_rss_mib()  # before validation, like annotune's figure
    start = time.perf_counter()
    trainer.save_model(str(workdir / "trl-adapter"))  # the trained adapter on disk, as annotune's run writes it
    save_s = time.perf_counter() - start
    trl_supervised = sum(sum(label != -100 for label in row["labels"]) for row in trainer.train_dataset)
    optim = getattr(config.optim, "value", config.optim)
    return {"model": trainer.model, "train_s": train_s, "peak_rss_mib": rss,
            "extra": {"trl_supervised_tokens_per_epoch": trl_supervised, "total_steps": total_steps,
                      "gradient_checkpointing": args.trl_gradient_checkpointing, "optim": optim,
                      "save_s": save_s}}


def worker(args: argparse.Namespace) -> None:
    from annotune.cli import _quiet_libraries
    from annotune.dataset import load_valid

    _quiet_libraries()
    with tempfile.TemporaryDirectory(prefix=f"throughput-{args.worker}-") as tmp:
        if args.worker == "annotune-autocast-base":
            from annotune.train import prepare

            prepare.freeze_base_in_bf16 = lambda model: 0
        if args.worker == "annotune-masked-attention":
            from annotune.train import attention

            attention.switch_on = lambda model: False
        if args.worker == "annotune-unshared-start":
            from annotune.train import attention

            attention.shares_starts = lambda model: False
        if args.worker == "annotune-torch-dropout":
            from annotune.train import model_setup

            model_setup.replace_lora_dropout = lambda model: 0
        run = run_trl if args.worker == "trl" else run_annotune
        outcome = run(args, Path(tmp))
        tokenizer = load_encoder(args.model)
        val_convs = load_valid(args.val_file, "openai")
        started = time.perf_counter()
        val = validation_loss(outcome["model"], tokenizer, val_convs, args.precision)
        val_s = time.perf_counter() - started
    frozen = sum(p.numel() for p in outcome["model"].parameters() if not p.requires_grad)
    model = outcome["model"]
    head, embedding = model.get_output_embeddings(), model.get_input_embeddings()
    if getattr(model.config, "tie_word_embeddings", False) and head is not None and head.weight is not embedding.weight:
        frozen -= head.weight.numel()  # annotune's bf16 copy of a tied head: the same model, counted once
    Path(args.result).write_text(json.dumps({"train_s": outcome["train_s"], "peak_rss_mib": outcome["peak_rss_mib"],
                                             "val_loss": val, "val_s": val_s, "frozen_params": frozen, **outcome["extra"]},
                                            indent=2))


# ---------------------------------------------------------------------------------------------------- parent


def prepare(args: argparse.Namespace, workdir: Path) -> dict:
    """Read, limit and split the data once; write both parts for the workers; count supervised tokens."""
    import torch

    from annotune.dataset import load_valid, train_val_split, write_dataset
    from annotune.models.templates import encode
    from annotune.train.precision import resolve_precision

    convs = load_valid(args.data)
    if args.limit:
        convs = convs[: args.limit]
    val_size = int(args.val_size) if args.val_size >= 1 else args.val_size
    train, val = train_val_split(convs, val_size, args.seed)
    if not val:
        raise SystemExit("--val-size 0: the benchmark compares validation loss, so it needs a validation set")
    multi = sum(1 for c in train if sum(m.role == "assistant" for m in c.messages) > 1)
    if multi:
        print(f"note: {multi} training conversations have several answers; TRL trains on the last one only")
    tokenizer = load_encoder(args.model)
    write_dataset(train, workdir / "train.jsonl", "openai")
    write_dataset(val, workdir / "val.jsonl", "openai")
    write_dataset(train[:WARM_UP_CHATS], workdir / "warm-up.jsonl", "openai")
    device = "cuda" if torch.cuda.is_available() else "cpu"  # the device annotune's trainer picks
    return {"train": len(train), "val": len(val), "precision": resolve_precision(args.precision, device),
            "device": device, "supervised_tokens": supervised_tokens(tokenizer, train) * args.epochs,
            "tokens": sum(len(encode(tokenizer, c).input_ids) for c in train) * args.epochs,
            "val_supervised_tokens": supervised_tokens(tokenizer, val)}


def warm_up(names, info: dict, workdir: Path) -> float:
    """Every worker once, untimed, on the first WARM_UP_CHATS training chats: the first worker timed then does not
    pay alone for a cold disk cache or first-time imports. Returns the wall time of all of them."""
    start = time.perf_counter()
    for name in names:
        run_worker(name, info, workdir, train_file=workdir / "warm-up.jsonl", quiet=True)
    return time.perf_counter() - start


def run_worker(name: str, info: dict, workdir: Path, train_file: Path | None = None, quiet: bool = False) -> dict:
    result = workdir / f"{name}.json"
    command = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:], "--worker", name,
               "--precision", info["precision"], "--train-file", str(train_file or workdir / "train.jsonl"),
               "--val-file", str(workdir / "val.jsonl"), "--result", str(result)]
    if not quiet:
        print(f"running {name} ...", flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=quiet)
    figures = json.loads(result.read_text())
    # The worker's own validation pass (the same for both) is not part of training: take it out of the process time.
    figures["process_s"] = time.perf_counter() - start - figures.get("val_s", 0.0)
    figures["sup_tokens_per_s"] = info["supervised_tokens"] / figures["train_s"]
    figures["tokens_per_s"] = info["tokens"] / figures["train_s"]
    figures["process_tokens_per_s"] = info["tokens"] / figures["process_s"]
    peak = info["peak_gflops"][info["precision"]]
    # MFU counts the tokens the layers computed: where annotune holds a row's shared start once, fewer than the
    # data's (tokens/s, the work done, still counts the data's)
    computed = figures.get("computed_tokens") or info["tokens"]
    figures["mfu"] = computed / figures["train_s"] * 4 * figures["frozen_params"] / (peak * 1e9)
    return figures


def report(args: argparse.Namespace, info: dict, results: dict) -> dict:
    a, t = results["annotune"], results["trl"]
    ratio = a["sup_tokens_per_s"] / t["sup_tokens_per_s"]
    diff = a["val_loss"] - t["val_loss"]
    print(f"\nmodel {args.model}, device {info['device']}, precision {info['precision']}, {info['train']} train / "
          f"{info['val']} val conversations, {args.epochs} epoch(s), batch {args.batch_size}, lr {args.lr}, "
          f"LoRA r{args.lora_r}/alpha {args.lora_alpha}, max length {args.max_length}")
    print(f"supervised answer tokens trained on: {info['supervised_tokens']} (annotune encoding, x epochs)")
    print("timed: training only (model loading, data preparation and saving excluded; annotune's epoch-end "
          f"validation {a['epoch_end_eval_s']:.1f} s and checkpoints {a['checkpoint_s']:.1f} s excluded too)")
    print(f"TRL: no packing (its default), gradient checkpointing {'on' if t['gradient_checkpointing'] else 'off'}, "
          f"optim {t['optim']}; annotune packed rows: {a['packed']}")
    if t["trl_supervised_tokens_per_epoch"] * args.epochs != info["supervised_tokens"]:
        print(f"note: TRL's labels cover {t['trl_supervised_tokens_per_epoch']} tokens per epoch, annotune's "
              f"{info['supervised_tokens'] // args.epochs}")
    peaks = info["peak_gflops"]
    print(f"machine: {info['machine']}; MFU against the {info['precision']} peak {peaks[info['precision']]:.0f} GFLOP/s")
    print(f"\n{'trainer':<24}{'tok/s':>8}{'MFU':>7}{'train s':>9}{'process s':>11}{'process tok/s':>15}"
          f"{'sup tok/s':>11}{'peak RSS MiB':>14}{'val loss':>10}")
    for name in results:
        r = results[name]
        print(f"{name:<24}{r['tokens_per_s']:>8.1f}{r['mfu']:>7.1%}{r['train_s']:>9.1f}{r['process_s']:>11.1f}"
              f"{r['process_tokens_per_s']:>15.1f}{r['sup_tokens_per_s']:>11.1f}{r['peak_rss_mib']:>14.0f}"
              f"{r['val_loss']:>10.4f}")
    process_ratio = a["process_tokens_per_s"] / t["process_tokens_per_s"]
    print(f"ratio (annotune / trl): {ratio:.2f}x training throughput, {process_ratio:.2f}x whole process, "
          f"val loss diff {diff:+.4f} (annotune - trl)")
    extras = a["router_s"] + a["loss_plot_s"]
    print(f"whole process: both write the trained adapter (TRL's save {t['save_s']:.1f} s); annotune's also "
          f"builds its router ({a['router_s']:.1f} s) and draws loss.png ({a['loss_plot_s']:.1f} s), which TRL "
          f"does not: without those, {t['process_s'] / (a['process_s'] - extras):.2f}x")
    return {"settings": {k: v for k, v in vars(args).items() if k not in ("worker", "train_file", "val_file",
                                                                        "result", "json")},
            **info, "results": results, "throughput_ratio": ratio, "process_ratio": process_ratio,
            "val_loss_diff": diff}


def _machine() -> tuple[str, dict[str, float]]:
    """The CPU (or GPU) and its measured matmul peak, measured here, before the trainers run."""
    import torch
    from machine import describe, matmul_peak

    if torch.cuda.is_available():  # the GPU's peak, measured the same way
        return torch.cuda.get_device_name(), _cuda_peak()
    peaks = matmul_peak()
    return describe(peaks), peaks


def _cuda_peak() -> dict[str, float]:
    import torch

    peaks = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = (torch.randn(8192, 8192, dtype=dtype, device="cuda") for _ in range(2))
        a @ b
        torch.cuda.synchronize()
        start, runs = time.perf_counter(), 0
        while time.perf_counter() - start < 2:
            a @ b
            runs += 1
        torch.cuda.synchronize()
        peaks[name] = 2 * 8192 ** 3 * runs / (time.perf_counter() - start) / 1e9
    return peaks


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    from annotune.cli import _quiet_libraries

    _quiet_libraries()
    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        workdir = Path(tmp)
        info = prepare(args, workdir)
        info["machine"], info["peak_gflops"] = _machine()
        print(f"precision: {info['precision']} (requested {args.precision}), device {info['device']}", flush=True)
        names = TRAINERS + tuple(v for v in VARIANTS if args.variants or v in args.variant)
        print(f"warm-up: every trainer once on {WARM_UP_CHATS} chats, untimed ...", flush=True)
        print(f"warm-up took {warm_up(names, info, workdir):.1f} s", flush=True)
        results = {name: run_worker(name, info, workdir) for name in names}
    figures = report(args, info, results)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
