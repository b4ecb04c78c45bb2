"""Export parity on the real embedded model (SmolLM2-135M-Instruct): a LoRA run trained for a few steps, exported
merged (logits equal base + adapter, transformers' generate answers like the run) and as an f16 GGUF that
llama.cpp runs to the run's greedy answers, stopping where the run stops."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from annotune.export.pipeline import export_run
from annotune.runs import RunFolder

pytestmark = pytest.mark.slow
LOGIT_TOLERANCE = 2e-3  # fp32, 30 layers: merged W + BA vs W x + B(A x), rounding only (see docs/benchmarks.md)
MAX_NEW = 96


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, real_model_home) -> Path:
    from annotune.config import TrainConfig
    from annotune.train.sft import train

    root = tmp_path_factory.mktemp("real")
    repo = Path(__file__).resolve().parents[2]
    lines = (repo / "examples" / "support" / "train.jsonl").read_text().splitlines()[:12]
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.MonkeyPatch.context() as patch:  # a module fixture runs before the test's own home is made
        patch.setenv("ANNOTUNE_HOME", str(real_model_home))
        # replay and rewordings play no part in an export (test_embedded trains the real model with both)
        return train(TrainConfig(data=str(root / "train.jsonl"), out=str(root / "run"), epochs=2, batch_size=4,
                                 val_size=0, replay=0, paraphrases=0, progress=False))


def _questions(run: Path) -> list[list[dict]]:
    """Five training questions (the run's default system prompt is added by every runtime, not here)."""
    convs = [json.loads(line)["messages"] for line in (run / "data" / "train.jsonl").read_text().splitlines()]
    return [[next(m for m in conv if m["role"] == "user")] for conv in convs[:5]]


def _engine(run: Path, conversations):
    from annotune.generation.config import GenerationConfig
    from annotune.generation.loading import load_engine

    with load_engine(str(run), routing=False) as engine:  # an exported model cannot route
        name = next(iter(engine.models))
        prompts = [engine.models[name].prompt_ids(c) for c in conversations]
        results = engine.generate(name, conversations, GenerationConfig(max_new_tokens=MAX_NEW))
    assert all(r.finish_reason == "stop" for r in results), [r.text for r in results]
    return prompts, results


def test_real_model_merged_and_gguf_exports_answer_like_the_run(real_run, tmp_path):
    import llama_cpp
    from peft import PeftModel

    run = RunFolder(real_run)
    conversations = _questions(real_run)
    prompts, results = _engine(real_run, conversations)

    merged = export_run(real_run, tmp_path / "hf", fmt="hf").out
    model = AutoModelForCausalLM.from_pretrained(merged).eval()
    tokenizer = AutoTokenizer.from_pretrained(merged)
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(run.base().path), run.adapter_dir)
    with torch.no_grad():
        for ids, result in zip(prompts, results):
            prompt = torch.tensor([ids])
            assert (model(prompt).logits - reference.eval()(prompt).logits).abs().max().item() < LOGIT_TOLERANCE
            out = model.generate(prompt, max_new_tokens=MAX_NEW, do_sample=False)[0, len(ids):]
            assert tokenizer.decode(out, skip_special_tokens=True) == result.text
    del model, reference

    gguf = export_run(real_run, tmp_path / "gguf", fmt="gguf", quant="f16").out / "model.gguf"
    llm = llama_cpp.Llama(str(gguf), n_ctx=1024, n_threads=2, verbose=False)
    try:
        for ids, result in zip(prompts, results):
            choice = llm.create_completion(ids, max_tokens=MAX_NEW, temperature=0.0)["choices"][0]
            assert (choice["text"], choice["finish_reason"]) == (result.text, "stop")
    finally:
        llm.close()
