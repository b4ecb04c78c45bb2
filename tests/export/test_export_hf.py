"""`annotune export --format hf|adapter` on a tiny LoRA run that answers known text: the merged folder's logits
equal base + adapter, transformers' own generate gives the run's greedy answers and stops, tied embeddings stay
tied; the adapter loads with PeftModel on the recorded base; errors leave nothing behind."""

import json
import shutil

import pytest
import torch
from conftest import run_cli
from safetensors import safe_open
from serve_fixtures import ANSWERS
from transformers import AutoModelForCausalLM, AutoTokenizer

from annotune.errors import ExportError
from annotune.export.pipeline import export_run
from annotune.runs import RunFolder

LOGIT_TOLERANCE = 1e-4  # fp32 merge vs unmerged LoRA forward: rounding only


def _reference(run: RunFolder):
    """The tuned model as training left it: the base with the adapter applied on the side, not merged."""
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(run.base().path, dtype=torch.float32)
    return PeftModel.from_pretrained(base, run.adapter_dir).eval()


def _prompt(run: RunFolder, question: str) -> torch.Tensor:
    from annotune.models.templates import prompt_ids

    return torch.tensor([prompt_ids(run.tokenizer(), [{"role": "user", "content": question}])])


def _engine_answers(run_dir, questions: list[str]) -> list[str]:
    from annotune.generation.config import GenerationConfig
    from annotune.generation.loading import load_engine

    with load_engine(str(run_dir), routing=False) as engine:  # an exported model cannot route
        results = engine.generate(next(iter(engine.models)), [[{"role": "user", "content": q}] for q in questions],
                                  GenerationConfig(max_new_tokens=128))
    assert all(r.finish_reason == "stop" for r in results)
    return [r.text for r in results]


@pytest.fixture(scope="module")
def merged(memorized, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "support-hf"
    result = run_cli("export", str(memorized["support"]), "--out", str(out), "--format", "hf")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"to {out}" in result.stdout
    return out


def test_merged_logits_equal_base_plus_adapter(memorized, merged):
    run = RunFolder(memorized["support"])
    model = AutoModelForCausalLM.from_pretrained(merged).eval()
    reference = _reference(run)
    with torch.no_grad():
        for question in ANSWERS["support"]:
            ids = _prompt(run, question)
            diff = (model(ids).logits - reference(ids).logits).abs().max().item()
            assert diff < LOGIT_TOLERANCE, (question, diff)


def test_merged_folder_answers_like_the_run_in_transformers_generate(memorized, merged):
    questions = list(ANSWERS["support"])
    expected = _engine_answers(memorized["support"], questions)
    assert expected == list(ANSWERS["support"].values())  # the run answers its memorised text
    model = AutoModelForCausalLM.from_pretrained(merged).eval()
    tokenizer = AutoTokenizer.from_pretrained(merged)
    for question, answer in zip(questions, expected):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)
        out = model.generate(**ids, max_new_tokens=128, do_sample=False)[0, ids["input_ids"].shape[1]:]
        assert out[-1].item() in model.generation_config.eos_token_id  # it stopped, on a stop token
        assert tokenizer.decode(out, skip_special_tokens=True) == answer


def test_merged_folder_keeps_template_stop_tokens_and_tied_embeddings(memorized, merged):
    run = RunFolder(memorized["support"])
    assert (merged / "chat_template.jinja").read_text() == (run.path / "chat_template.jinja").read_text()
    assert json.loads((merged / "generation_config.json").read_text())["eos_token_id"] == run.stop_ids
    config = json.loads((merged / "config.json").read_text())
    assert config["tie_word_embeddings"] is True and config["dtype"] == "float32"
    with safe_open(merged / "model.safetensors", "pt") as weights:
        assert "lm_head.weight" not in weights.keys() and "model.embed_tokens.weight" in weights.keys()
    model = AutoModelForCausalLM.from_pretrained(merged)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    readme = (merged / "README.md").read_text()
    assert "vllm serve" in readme and str(run.base().path) in readme and "text-generation-inference" in readme


def test_bf16_export_halves_the_weights(memorized, tmp_path):
    out = export_run(memorized["support"], tmp_path / "bf16", fmt="hf", dtype="bf16").out
    with safe_open(out / "model.safetensors", "pt") as weights:
        assert {weights.get_tensor(k).dtype for k in weights.keys()} == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


def test_adapter_export_loads_with_peft_on_the_recorded_base(memorized, tmp_path):
    from peft import PeftModel

    run = RunFolder(memorized["support"])
    out = export_run(run.path, tmp_path / "adapter", fmt="adapter").out
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == run.base().path
    base = AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"], dtype=torch.float32)
    model = PeftModel.from_pretrained(base, out).eval()
    reference = _reference(run)
    with torch.no_grad():
        ids = _prompt(run, "Who are you?")
        assert torch.equal(model(ids).logits, reference(ids).logits)
    readme = (out / "README.md").read_text()
    assert "--enable-lora --lora-modules support=THIS_FOLDER" in readme and run.base().path in readme
    assert config["r"] == 16 and "--max-lora-rank 16 " in readme  # vLLM's default; a rank-64 run needs 64
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == run.stop_ids


def test_existing_folder_needs_overwrite_and_only_an_export_is_replaced(memorized, tmp_path):
    run, out = str(memorized["support"]), tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_cli("export", run, "--out", str(out), "--format", "adapter")
    assert result.returncode == 2 and "--overwrite" in result.stderr and (out / "keep.txt").exists()
    result = run_cli("export", run, "--out", str(out), "--format", "adapter", "--overwrite")
    assert result.returncode == 2 and "not an annotune export" in result.stderr and (out / "keep.txt").exists()
    (out / "keep.txt").unlink()
    assert run_cli("export", run, "--out", str(out), "--format", "adapter").returncode == 0
    (out / "stale.txt").write_text("from before")
    result = run_cli("export", run, "--out", str(out), "--format", "adapter", "--overwrite")
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (out / "stale.txt").exists() and (out / "adapter_model.safetensors").exists()
    assert json.loads((out / "annotune-export.json").read_text())["format"] == "adapter"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left beside it


def test_full_fine_tune_exports_its_own_weights(tiny, chats, tmp_path):
    from annotune.config import TrainConfig
    from annotune.train.sft import train

    run = train(TrainConfig(data=str(chats), model=str(tiny), out=str(tmp_path / "full"), method="full", epochs=1,
                            batch_size=4, val_size=0, progress=False))
    out = export_run(run, tmp_path / "hf", fmt="hf").out
    ids = _prompt(RunFolder(run), "How do I reset device 1?")
    with torch.no_grad():
        exported = AutoModelForCausalLM.from_pretrained(out).eval()(ids).logits
        trained = AutoModelForCausalLM.from_pretrained(RunFolder(run).weights_dir).eval()(ids).logits
    assert torch.equal(exported, trained)
    with pytest.raises(ExportError, match="full fine-tune .* --format hf or gguf"):
        export_run(run, tmp_path / "adapter", fmt="adapter")


def test_unfinished_run_is_refused(memorized, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(memorized["support"], run)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "training"}))
    result = run_cli("export", str(run), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "has not finished training" in result.stderr
    assert not (tmp_path / "out").exists()


def test_not_enough_disk_says_so_and_leaves_nothing(memorized, tmp_path, monkeypatch):
    import annotune.export.pipeline as pipeline

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(pipeline.shutil, "disk_usage", lambda path: usage._replace(free=1000))
    with pytest.raises(ExportError, match="not enough disk space"):
        export_run(memorized["support"], tmp_path / "out", fmt="hf")
    assert list(tmp_path.iterdir()) == []


def test_vllm_max_lora_rank_is_the_smallest_allowed_value_that_holds_the_rank():
    from annotune.export.readme import _vllm_max_lora_rank

    assert [_vllm_max_lora_rank(r) for r in (4, 16, 20, 64, 100, 512)] == [8, 16, 32, 64, 128, 512]
