"""`annotune export --format gguf`, checked in llama.cpp itself (the llama-cpp-python bindings `make setup` builds):
the f16 GGUF gives the run's greedy answers on five prompts and stops at the end of each, from the same prompt
tokens and through the chat template embedded in the file; q8_0 and q4_k_m load; the Modelfile is complete."""

import json

import pytest
from conftest import run_cli
from export_fixtures import LLAMA2, SMOL_ANSWERS, SYSTEM

from annotune.errors import ExportError
from annotune.export.gguf import quantize, read_metadata
from annotune.export.pipeline import export_run
from annotune.runs import RunFolder

QUESTIONS = list(SMOL_ANSWERS)


def _llama(path):
    import llama_cpp  # built by `make setup`: a missing module fails the test, it never skips

    return llama_cpp.Llama(str(path), n_ctx=512, n_threads=2, verbose=False, seed=0)


def _engine_results(run_dir, questions):
    from annotune.generation.config import GenerationConfig
    from annotune.generation.loading import load_engine

    with load_engine(str(run_dir), routing=False) as engine:  # an exported model cannot route
        name = next(iter(engine.models))
        prompts = [engine.models[name].prompt_ids([{"role": "user", "content": q}]) for q in questions]
        results = engine.generate(name, [[{"role": "user", "content": q}] for q in questions],
                                  GenerationConfig(max_new_tokens=48))
    return prompts, results


@pytest.fixture(scope="module")
def exported(smol_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("gguf") / "smol-gguf"
    result = run_cli("export", str(smol_run), "--out", str(out), "--format", "gguf")
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_f16_gguf_in_llama_cpp_gives_the_runs_greedy_answers_and_stops(smol_run, exported):
    prompts, results = _engine_results(smol_run, QUESTIONS)
    assert [r.text for r in results] == list(SMOL_ANSWERS.values())  # the tuned run answers its memorised text
    assert all(r.finish_reason == "stop" for r in results)
    llm = _llama(exported / "model.gguf")
    try:
        tokenizer = RunFolder(smol_run).tokenizer()
        for ids, result in zip(prompts, results):
            assert llm.tokenize(tokenizer.decode(ids).encode(), add_bos=False, special=True) == ids
            choice = llm.create_completion(ids, max_tokens=48, temperature=0.0)["choices"][0]
            assert (choice["text"], choice["finish_reason"]) == (result.text, "stop")
    finally:
        llm.close()


def test_llama_cpp_chat_with_the_embedded_template_answers_and_stops(exported):
    llm = _llama(exported / "model.gguf")
    try:
        for question, answer in SMOL_ANSWERS.items():
            messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
            choice = llm.create_chat_completion(messages, max_tokens=48, temperature=0.0)["choices"][0]
            assert (choice["message"]["content"], choice["finish_reason"]) == (answer, "stop")
    finally:
        llm.close()


def test_gguf_metadata_and_modelfile(smol_run, exported):
    run = RunFolder(smol_run)
    meta = read_metadata(exported / "model.gguf")
    assert meta["chat_template"] == (run.path / "chat_template.jinja").read_text()
    assert meta["eos"] in run.stop_ids and meta["file_type"] == 1  # LLAMA_FTYPE_MOSTLY_F16
    lines = (exported / "Modelfile").read_text().splitlines()
    assert lines[0] == "FROM ./model.gguf" and lines[1].startswith('TEMPLATE """')
    assert f'SYSTEM """{SYSTEM}"""' in lines
    stops = [json.loads(line.split(" ", 2)[2]) for line in lines if line.startswith("PARAMETER stop ")]
    assert stops == [run.tokenizer().convert_ids_to_tokens(i) for i in run.stop_ids]
    assert sorted(p.name for p in exported.iterdir()) == ["Modelfile", "README.md", "annotune-export.json", "model.gguf"]
    assert "ollama create run -f Modelfile" in (exported / "README.md").read_text()  # named after the run


def test_q8_0_export_loads_and_answers(smol_run, tmp_path):
    out = export_run(smol_run, tmp_path / "q8", fmt="gguf", quant="q8_0").out
    assert read_metadata(out / "model.gguf")["file_type"] == 7  # LLAMA_FTYPE_MOSTLY_Q8_0
    _answers_something(out / "model.gguf")


def test_q4_k_m_through_llama_cpps_quantiser_loads_and_answers(exported, tmp_path):
    # --quant q4_k_m runs the converter to f16, then this (the f16 export's file stands in for that step)
    quantize(exported / "model.gguf", tmp_path / "q4.gguf", "q4_k_m")
    assert read_metadata(tmp_path / "q4.gguf")["file_type"] == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    _answers_something(tmp_path / "q4.gguf")


def _answers_something(path) -> None:
    llm = _llama(path)
    try:
        choice = llm.create_chat_completion([{"role": "user", "content": QUESTIONS[0]}], max_tokens=16,
                                            temperature=0.0)["choices"][0]
        assert choice["message"]["content"] and choice["finish_reason"] in ("stop", "length")
    finally:
        llm.close()


def test_an_untranslatable_template_still_gives_the_gguf_without_a_modelfile(smol_run, tmp_path):
    import shutil

    run = tmp_path / "llama2-run"
    shutil.copytree(smol_run, run)
    for template in (run / "chat_template.jinja", run / "tokenizer" / "chat_template.jinja"):
        template.write_text(LLAMA2)
    result = run_cli("export", str(run), "--out", str(tmp_path / "out"), "--format", "gguf")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "warning: no Ollama Modelfile" in result.stderr
    out = tmp_path / "out"
    assert not (out / "Modelfile").exists() and read_metadata(out / "model.gguf")["chat_template"] == LLAMA2
    assert "there is no Modelfile" in (out / "README.md").read_text()


def test_missing_converter_says_how_to_get_it(smol_run, tmp_path):
    result = run_cli("export", str(smol_run), "--out", str(tmp_path / "out"), "--format", "gguf",
                     env={"ANNOTUNE_LLAMA_CPP": str(tmp_path / "nowhere")})
    assert result.returncode == 2 and "make setup" in result.stderr and "hf and adapter formats" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_architecture_the_converter_cannot_handle_names_the_formats_that_work(opt_run, tmp_path):
    with pytest.raises(ExportError, match="OPTForCausalLM.*--format hf .* and --format adapter still work"):
        export_run(opt_run, tmp_path / "out", fmt="gguf")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def opt_run(tmp_path_factory):
    """A LoRA run on a tiny OPT model, an architecture llama.cpp has no converter for."""
    import tiny_model
    from conftest import QA, write_chats
    from transformers import AutoModelForCausalLM, OPTConfig

    from annotune.config import TrainConfig
    from annotune.train.sft import train

    root = tmp_path_factory.mktemp("opt")
    tokenizer = tiny_model.build_tokenizer("chatml")
    config = OPTConfig(vocab_size=len(tokenizer), hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                       num_attention_heads=4, word_embed_proj_dim=32, max_position_embeddings=512)
    AutoModelForCausalLM.from_config(config).save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    data = write_chats(root / "chats.jsonl", QA[:3])
    return train(TrainConfig(data=str(data), model=str(root / "base"), out=str(root / "run"), method="lora",
                             epochs=1, batch_size=3, val_size=0, progress=False))
