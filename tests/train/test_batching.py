"""Packing: conversations share a row without seeing each other, and the loss equals the unpacked loss."""

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from annotune.conversation import Conversation, Message
from annotune.models.templates import encode, ensure_chat_template
from annotune.train import batching
from annotune.train.model_setup import packing_supported


def _encoded(tokenizer, n=3):
    convs = [Conversation([Message("user", f"question {i} " * (i + 1)), Message("assistant", f"answer {i} " * (i + 2))])
             for i in range(n)]
    return [encode(tokenizer, c) for c in convs]


def _loss_sum(model, batch):
    out = model(input_ids=batch.input_ids, position_ids=batch.position_ids, attention_mask=batch.attention_mask,
                use_cache=False)
    return F.cross_entropy(out.logits.flatten(0, 1)[batch.keep], batch.targets, reduction="sum")


def test_packed_loss_equals_separate_losses(tiny_models):
    for name in ("chatml", "qwen2", "gpt_neox"):
        tokenizer = AutoTokenizer.from_pretrained(tiny_models[name])
        ensure_chat_template(tokenizer)
        model = AutoModelForCausalLM.from_pretrained(tiny_models[name]).eval()
        examples = _encoded(tokenizer)
        packed = batching.pack(examples)
        assert packed.input_ids.shape[0] == 1 and packed.tokens == sum(len(e.input_ids) for e in examples)
        separate = sum(_loss_sum(model, batching.pack([e])) for e in examples)
        padded = _loss_sum(model, batching.pad(examples, tokenizer.pad_token_id))
        torch.testing.assert_close(padded, separate, rtol=1e-4, atol=1e-4)
        assert packing_supported(model, "cpu"), name  # every architecture here keeps packed rows apart
        torch.testing.assert_close(_loss_sum(model, packed), separate, rtol=1e-4, atol=1e-4)
        assert packed.supervised == sum(e.supervised for e in examples)


class _LeakyModel(torch.nn.Module):
    """Each position sees every earlier token, across packed sequences too (positions are ignored)."""

    def __init__(self):
        super().__init__()
        self.config = type("Config", (), {"vocab_size": 50})()
        self.embed = torch.nn.Embedding(50, 50)

    def forward(self, input_ids, position_ids=None, use_cache=False):
        return type("Out", (), {"logits": self.embed(input_ids).cumsum(dim=1)})()


def test_packing_check_catches_a_model_that_mixes_packed_rows():
    assert packing_supported(_LeakyModel(), "cpu") is False


def test_epoch_order_is_fixed_by_seed_and_epoch():
    items = list(range(10))
    a = batching.epoch_batches(items, 3, seed=1, epoch=0)
    assert a == batching.epoch_batches(items, 3, seed=1, epoch=0)
    assert a != batching.epoch_batches(items, 3, seed=1, epoch=1)
    assert sorted(x for g in a for x in g) == items and [len(g) for g in a] == [3, 3, 3, 1]


def test_step_slots_give_every_rank_the_same_number_of_micro_batches():
    groups = list(range(5))  # 5 groups, 2 ranks, 2 micro-batches each -> step 0: groups 0-3, step 1: group 4
    assert batching.steps_per_epoch(5, grad_accum=2, world=2) == 2
    assert batching.step_slots(groups, 0, 2, 2, rank=0) == [(0, 1.0), (2, 1.0)]
    assert batching.step_slots(groups, 0, 2, 2, rank=1) == [(1, 1.0), (3, 1.0)]
    assert batching.step_slots(groups, 1, 2, 2, rank=0) == [(4, 1.0), (4, 0.0)]
    assert batching.step_slots(groups, 1, 2, 2, rank=1) == [(4, 0.0), (4, 0.0)]
