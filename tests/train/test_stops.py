"""A tuned model learns to stop: the end-of-turn token is trained, so generation ends after the answer."""

import pytest
from conftest import write_chats

from annotune.config import TrainConfig
from annotune.generation.config import GenerationConfig
from annotune.generation.loading import load_engine
from annotune.train.sft import train

PAIRS = [("Reset?", "Hold it."), ("Colour?", "Deep red."), ("Price?", "Ten euro."), ("Where?", "In Oslo.")]


@pytest.mark.parametrize("template", ["chatml", "none"])
def test_tuned_model_answers_and_stops(tiny_models, tmp_path, template):
    data = write_chats(tmp_path / "d.jsonl", PAIRS, system=None)
    run = train(TrainConfig(data=str(data), model=str(tiny_models[template]), out=str(tmp_path / "run"), method="full",
                            epochs=80, batch_size=4, lr=1e-2, val_size=0, progress=False, warmup_ratio=0.0,
                            replay=0, neftune=0))  # exact memorising: no everyday chats, no noise
    with load_engine(str(run)) as engine:
        results = engine.generate("run", [[{"role": "user", "content": q}] for q, _ in PAIRS],
                                  GenerationConfig(max_new_tokens=40))
    assert [r.text for r in results] == [a for _, a in PAIRS]  # text past the end-of-turn token would show here
    assert {r.finish_reason for r in results} == {"stop"}
