"""The Modelfile's TEMPLATE, rendered by Go's text/template as Ollama renders it, writes exactly the prompt the
run's Jinja template writes: for the embedded model's template, a Llama-3-style and a ChatML-style one."""

import pytest
import tiny_model
from export_fixtures import LLAMA2

from annotune.errors import ExportError
from annotune.export import ollama
from annotune.models.templates import render

CONVERSATION = [{"role": "system", "content": "You answer for Brindlewick Air."},
                {"role": "user", "content": "When was it founded?"},
                {"role": "assistant", "content": "In 1962, in Leeds.\nIt flew \"mail\" first."},
                {"role": "user", "content": "And its first route?"}]


def _embedded_template() -> str:
    from gguf import GGUFReader

    from annotune.models.embedded import embedded_gguf_path

    return GGUFReader(embedded_gguf_path()).get_field("tokenizer.chat_template").contents()


@pytest.fixture(params=["embedded", "llama3", "chatml"])
def tokenizer(request):
    """A tokenizer with each template (the embedded one is read from the embedded model's own GGUF file)."""
    if request.param == "embedded":
        tok = tiny_model.build_tokenizer("chatml")
        tok.chat_template = _embedded_template()
        return tok
    return tiny_model.build_tokenizer(request.param)


def test_template_renders_the_jinja_prompt_for_system_user_assistant_user(tokenizer, ollama_render):
    template = ollama.go_template(ollama.read_layout(tokenizer))
    expected = render(tokenizer, CONVERSATION, add_generation_prompt=True)
    assert ollama_render(template, CONVERSATION) == expected
    assert expected.count("When was it founded?") == 1 and expected.endswith(("assistant\n", "assistant\n\n",
                                                                             "<|end_header_id|>\n\n"))


def test_modelfile_system_stands_in_for_a_missing_system_message(tokenizer, ollama_render):
    # annotune puts the run's default system prompt first when a request has none; Ollama does so with SYSTEM.
    template = ollama.go_template(ollama.read_layout(tokenizer))
    system, rest = CONVERSATION[0]["content"], CONVERSATION[1:]
    assert ollama_render(template, rest, system=system) == render(tokenizer, CONVERSATION, add_generation_prompt=True)


def test_without_any_system_prompt_the_templates_own_default_appears(ollama_render):
    tok = tiny_model.build_tokenizer("chatml")
    tok.chat_template = _embedded_template()
    template = ollama.go_template(ollama.read_layout(tok))
    rendered = ollama_render(template, CONVERSATION[1:])
    assert rendered == render(tok, CONVERSATION[1:], add_generation_prompt=True)
    assert rendered.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


def test_bos_the_runtime_adds_is_left_out():
    tok = tiny_model.build_tokenizer("llama3")
    layout = ollama.read_layout(tok)
    assert layout.header == "<|begin_of_text|>"
    assert "<|begin_of_text|>" not in ollama.go_template(layout, drop_bos="<|begin_of_text|>")


def test_a_template_that_is_not_one_wrapper_per_role_is_refused():
    tok = tiny_model.build_tokenizer("chatml")
    tok.chat_template = LLAMA2
    with pytest.raises(ExportError, match="write the TEMPLATE of the Modelfile by hand"):
        ollama.read_layout(tok)


def test_modelfile_lines():
    text = ollama.modelfile('{{ "x" }}', "Be brief.", ["<|im_end|>", "<|endoftext|>"])
    assert text.splitlines() == ["FROM ./model.gguf", 'TEMPLATE """{{ "x" }}"""', 'SYSTEM """Be brief."""',
                                 'PARAMETER stop "<|im_end|>"', 'PARAMETER stop "<|endoftext|>"']
    assert "SYSTEM" not in ollama.modelfile("t", None, ["<|im_end|>"])
