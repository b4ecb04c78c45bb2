"""`annotune export RUN --out DIR --format hf|gguf|adapter`: hand a tuned run to the engines people deploy with."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    from annotune.export.pipeline import FORMATS, QUANTS

    p = sub.add_parser("export", help="export a run for vLLM, TGI, transformers, llama.cpp or Ollama",
                       description="Export a finished run: 'hf' merges the LoRA into the base's full-precision "
                                   "weights (transformers, vLLM, TGI); 'adapter' is the PEFT adapter for its exact "
                                   "base (vLLM --enable-lora, PeftModel); 'gguf' converts the merged model with "
                                   "llama.cpp's converter and writes an Ollama Modelfile. The folder gets a README "
                                   "with the commands for each engine.")
    p.add_argument("run", help="run folder (from `annotune train`)")
    p.add_argument("--out", required=True, help="export folder to create")
    p.add_argument("--format", choices=FORMATS, default="hf", help="what to write (default hf)")
    p.add_argument("--dtype", choices=["bf16", "f16", "f32"], default=None,
                   help="hf: precision of the merged weights (default: the base model's own)")
    p.add_argument("--quant", choices=QUANTS, default="f16",
                   help="gguf: f16 (exact), q8_0, or q4_k_m (llama.cpp's quantiser) (default f16)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from annotune.export.pipeline import export_run

    result = export_run(args.run, args.out, fmt=args.format, dtype=args.dtype, quant=args.quant,
                        overwrite=args.overwrite)
    print(f"Exported {args.run} as {result.format} to {result.out} ({result.bytes / 1e6:.1f} MB, "
          f"{result.seconds:.0f} s); {result.out / 'README.md'} says how to run it")
    from annotune.runs import RunFolder

    if RunFolder(args.run).router_file is not None:
        print("Note: the exported model answers every request with the run's tuning. `annotune serve` routes "
              "requests unlike the training questions to the base model, which keeps its everyday answers; "
              "`annotune evaluate RUN --no-routing` measures what the exported model keeps; a run trained with "
              "`--lora-plus 1 --lr 1e-3` forgets less and learns its domain less well (docs/serving.md).")
    return 0
