"""A tuned model learns to stop: the end-of-turn token is trained, so generation ends after the answer."""

import pytest

from annotune.config import TrainConfig
from annotune.models.inference import generate, load_chat_model
from annotune.train.sft import train
from conftest import write_chats

PAIRS = [("Reset?", "Hold it."), ("Colour?", "Deep red."), ("Price?", "Ten euro."), ("Where?", "In Oslo.")]


@pytest.mark.parametrize("template", ["chatml", "none"])
def test_tuned_model_answers_and_stops(tiny_models, tmp_path, template):
    data = write_chats(tmp_path / "d.jsonl", PAIRS, system=None)
    run = train(TrainConfig(data=str(data), model=str(tiny_models[template]), out=str(tmp_path / "run"), method="full",
                            epochs=80, batch_size=4, lr=1e-2, val_size=0, progress=False, warmup_ratio=0.0))
    cm = load_chat_model(str(run))
    answers = generate(cm, [[{"role": "user", "content": q}] for q, _ in PAIRS], max_new_tokens=40)
    assert answers == [a for _, a in PAIRS]  # anything generated past the end-of-turn token would show here
