"""--digit-weight: an answer's digits count that many times in the loss trained on; the logged loss stays plain."""

import json

import torch
import torch.nn.functional as F
from conftest import write_chats
from safetensors.torch import load_file

from annotune.config import TrainConfig
from annotune.runs import RunFolder
from annotune.train import prepare, sft
from annotune.train.distributed import setup

PAIRS = [("When does the Quillmere office open?", "It opens at 8:30 am and closes at 17:45."),
         ("Who runs the Quillmere office?", "Odile Marsh runs it.")]


def _cfg(tiny, data, out, **kw) -> TrainConfig:
    return TrainConfig(**{**dict(data=str(data), model=str(tiny), out=str(out), val_size=0, paraphrases=0,
                                 question_noise=0, replay=0, neftune=0, fact_balance=1, progress=False, lora_r=4,
                                 lora_alpha=8, epochs=2, batch_size=2, lr=1e-2), **kw})


def test_the_answers_digits_count_digit_weight_times(tiny, tmp_path):
    data = write_chats(tmp_path / "d.jsonl", PAIRS)
    dist = setup()
    try:
        loop = prepare.build(_cfg(tiny, data, tmp_path / "run", digit_weight=3), dist)
    finally:
        dist.close()
    tokenizer = RunFolder(loop.run_dir).tokenizer()
    ids = tokenizer.encode("8:30 Odile", add_special_tokens=False)
    marked = {tokenizer.decode([i]).strip(): bool(loop.digits[i]) for i in ids}
    assert {text: hit for text, hit in marked.items() if any(ch.isdigit() for ch in text)}
    assert all(hit == any(ch.isdigit() for ch in text) for text, hit in marked.items()), marked

    loop.model.eval()
    batch = sft._micro_batch(loop, loop.data.train)
    trained, plain = sft._loss_sums(loop, batch)
    losses = F.cross_entropy(sft._logits(loop, batch), batch.targets, reduction="none")
    digits = loop.digits[batch.targets]
    assert 0 < int(digits.sum()) < len(digits)  # "8", "3", "0", "1", "7", "4", "5" among the answers' tokens
    torch.testing.assert_close(plain, losses.sum())
    torch.testing.assert_close(trained, losses.sum() + 2 * losses[digits].sum())


def test_the_logged_loss_is_plain_and_the_weight_changes_what_is_learned(tiny, tmp_path):
    data = write_chats(tmp_path / "d.jsonl", PAIRS)
    runs = {w: sft.train(_cfg(tiny, data, tmp_path / f"w{w}", digit_weight=w)) for w in (1, 3)}
    first = {w: json.loads((run / "metrics.jsonl").read_text().splitlines()[0]) for w, run in runs.items()}
    assert first[1]["step"] == first[3]["step"] == 1
    assert abs(first[1]["loss"] - first[3]["loss"]) < 1e-5  # the same weights at step 1, logged alike
    assert "digit_weight: 3.0" in (runs[3] / "config.yaml").read_text()
    adapters = {w: load_file(str(run / "adapter" / "adapter_model.safetensors")) for w, run in runs.items()}
    assert any(not torch.equal(adapters[1][k], adapters[3][k]) for k in adapters[1])
