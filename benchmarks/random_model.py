"""Write a model folder with random weights: a given model's architecture and tokenizer, optionally resized.

    python benchmarks/random_model.py SOURCE TARGET [--set hidden_size=2048 --set num_hidden_layers=24 ...]
        [--dtype bf16]

SOURCE is any model reference annotune loads (the embedded `smollm2-135m`, a folder); only its config.json and
tokenizer are read. For speed measurements where the weights themselves cannot travel (a lent GPU machine with no
model hub): the arithmetic, memory traffic and kernels are those of trained weights of the same shape, but a
random model's answers are noise, so its generations usually run to the token limit instead of stopping early.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source")
    p.add_argument("target")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (JSON value), e.g. num_hidden_layers=24")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="bf16", help="dtype the weights are saved in")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from annotune.models.loading import load_tokenizer, resolve_model

    source = resolve_model(args.source)
    config = AutoConfig.from_pretrained(source.path)
    for item in args.set:
        key, _, value = item.partition("=")
        if not hasattr(config, key):
            raise SystemExit(f"--set {item}: {type(config).__name__} has no field {key!r}")
        setattr(config, key, json.loads(value))
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if args.dtype == "bf16" else torch.float32)
    target = Path(args.target)
    model.save_pretrained(target)
    load_tokenizer(source).save_pretrained(target)
    params = sum(p.numel() for p in model.parameters())
    print(f"{target}: {type(model).__name__}, {params / 1e6:.1f}M parameters, random weights ({args.dtype})")


if __name__ == "__main__":
    main()
