"""Packed rows and token-budget micro-batches compute exactly what the padded batch computes
(real tiny Llama): the SFT loss and the GRPO loss in every aggregation, gradients included."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from rlplat.algo.batching import MicroBatch, collate
from rlplat.algo.logprobs import token_logprobs
from rlplat.algo.losses import AggregationMode, grpo_loss
from rlplat.algo.microbatches import MicroBatching, micro_batches, plan_micro_batches
from rlplat.algo.packing import collate_packed, pack_rows
from rlplat.types import TrainSequence

# transformers' LlamaForCausalLM: transformers is not type-checked here (pyproject.toml), so Any.
HFModel = Any


def test_first_fit_decreasing_fills_rows_and_keeps_every_example_once() -> None:
    lengths = [7, 3, 5, 2, 9, 4]
    rows = pack_rows(lengths, 10)
    assert sorted(i for r in rows for i in r) == list(range(6))
    assert all(sum(lengths[i] for i in r) <= 10 for r in rows)
    assert rows == [[4], [0, 1], [2, 5], [3]]  # longest first, each into the first row with room
    assert pack_rows([12], 10) == [[0]]  # too long: a row of its own
    with pytest.raises(ValueError):
        pack_rows([1], 0)


def test_a_token_budget_bounds_each_micro_batch_and_keeps_every_sequence_once() -> None:
    lengths = [5, 30, 7, 12, 3, 25, 9, 40, 6]
    padded = plan_micro_batches(lengths, MicroBatching(size=4, max_tokens=48))
    packed = plan_micro_batches(lengths, MicroBatching(size=4, max_tokens=48, pack_tokens=48))
    for plan, cost in ((padded, lambda g: len(g) * max(g)), (packed, sum)):
        assert sorted(i for g in plan for i in g) == list(range(len(lengths)))
        assert all(cost([lengths[i] for i in g]) <= 48 for g in plan if len(g) > 1)
    assert [[lengths[i] for i in g] for g in padded] == [[3, 5, 6, 7, 9], [12], [25], [30], [40]]
    assert len(packed) < len(padded)  # packing fits more sequences under the same budget
    assert plan_micro_batches([60], MicroBatching(size=4, max_tokens=48)) == [[0]]  # over budget: alone


def test_ranks_can_agree_on_a_larger_count_and_never_an_impossible_one() -> None:
    lengths = [5, 30, 7, 12, 3, 25, 9, 40, 6]
    rule = MicroBatching(size=4, max_tokens=48)
    for count in range(5, len(lengths) + 1):
        plan = plan_micro_batches(lengths, rule, count)
        assert len(plan) == count and sorted(i for g in plan for i in g) == list(range(len(lengths)))
    with pytest.raises(ValueError, match="cannot cut"):
        plan_micro_batches(lengths, rule, 4)  # fewer than the budget allows (it needs 5)
    with pytest.raises(ValueError, match="cannot cut"):
        plan_micro_batches(lengths, rule, 10)  # more than one sequence each


def _seqs() -> list[TrainSequence]:
    """Variable lengths, rollout log-probs and advantages, as a GRPO step's sequences."""
    g = torch.Generator().manual_seed(0)
    out = []
    for p, c in ((3, 5), (6, 2), (2, 7), (4, 4), (1, 3), (5, 9)):
        ids = torch.randint(5, 90, (p + c,), generator=g).tolist()
        old = (-4.0 + 0.5 * torch.rand(c, generator=g)).tolist()
        out.append(TrainSequence(tuple(ids[:p]), tuple(ids[p:]), tuple(old), float(torch.randn(1, generator=g))))
    return out


def _logprobs(model: HFModel, mb: MicroBatch) -> torch.Tensor:
    logits = model(input_ids=mb.input_ids, attention_mask=mb.attention_mask, position_ids=mb.position_ids,
                   use_cache=False).logits[:, :-1]
    return mb.per_sequence(token_logprobs(logits, mb.input_ids[:, 1:]))


def _sft_loss(model: HFModel, mb: MicroBatch, n_tokens: int) -> torch.Tensor:
    lp = _logprobs(model, mb)
    return -(torch.where(mb.loss_mask, lp, torch.zeros_like(lp))).sum() / n_tokens


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> HFModel:
    from transformers import AutoModelForCausalLM

    from rlplat.models.tiny import build_tiny_llama

    return AutoModelForCausalLM.from_pretrained(build_tiny_llama(tmp_path_factory.mktemp("m") / "m"),
                                                dtype=torch.float32)


def test_packed_sft_loss_and_gradients_equal_the_unpacked_batch(model: HFModel) -> None:
    seqs = _seqs()
    n_tokens = sum(len(s.completion_ids) for s in seqs)
    plain = _sft_loss(model, collate(seqs, 0), n_tokens)
    (g_plain,) = torch.autograd.grad(plain, [model.model.embed_tokens.weight])
    batches = micro_batches(seqs, MicroBatching(size=3, pack_tokens=12), pad_id=0)
    assert sum(int(b.loss_mask.sum()) for b in batches) == n_tokens
    assert sum(b.input_ids.numel() for b in batches) < collate(seqs, 0).input_ids.numel()  # less padding
    packed = sum((_sft_loss(model, b, n_tokens) for b in batches), torch.zeros(()))
    (g_packed,) = torch.autograd.grad(packed, [model.model.embed_tokens.weight])
    assert float(packed.detach()) == pytest.approx(float(plain.detach()), rel=1e-5)
    assert torch.allclose(g_packed, g_plain, atol=1e-6)


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum"])
@pytest.mark.parametrize("rule", [MicroBatching(size=2, max_tokens=30, pack_tokens=16),
                                  MicroBatching(size=2, max_tokens=24)], ids=["packed", "budget"])
def test_grpo_loss_and_gradients_equal_the_padded_batch(model: HFModel, agg: AggregationMode,
                                                        rule: MicroBatching) -> None:
    """The sequence-level aggregations need each sequence whole: the per-sequence layout gives it."""
    seqs = _seqs()
    num_tokens = float(sum(len(s.completion_ids) for s in seqs))
    seq_len_norm = 16.0 if agg == "seq_mean_token_sum" else None

    def loss(mb: MicroBatch) -> torch.Tensor:
        lp = _logprobs(model, mb)
        value, _ = grpo_loss(lp, mb.old_logprobs, mb.advantages, mb.loss_mask, agg_mode=agg,
                             ref_logprobs=mb.old_logprobs, kl_coef=0.1, num_tokens=num_tokens,
                             num_seqs=float(len(seqs)), seq_len_norm=seq_len_norm)
        return value

    whole = loss(collate(seqs, 0))
    (g_whole,) = torch.autograd.grad(whole, [model.model.layers[0].mlp.up_proj.weight])
    batches = micro_batches(seqs, rule, pad_id=0)
    assert len(batches) > 1
    split = sum((loss(b) for b in batches), torch.zeros(()))
    (g_split,) = torch.autograd.grad(split, [model.model.layers[0].mlp.up_proj.weight])
    assert float(split.detach()) == pytest.approx(float(whole.detach()), rel=1e-5)
    assert torch.allclose(g_split, g_whole, rtol=1e-4, atol=1e-7)


def test_per_sequence_layout_is_the_padded_one(model: torch.nn.Module) -> None:
    """Every tensor the loss reads is collate's, and the gathered log-probs match the padded ones."""
    seqs = _seqs()
    padded, packed = collate(seqs, 0), collate_packed(seqs, 16, 0)
    for name in ("loss_mask", "old_logprobs", "advantages"):
        assert torch.equal(getattr(packed, name), getattr(padded, name)), name
    assert packed.input_ids.shape[0] < len(seqs)
    with torch.no_grad():
        a, b = _logprobs(model, padded), _logprobs(model, packed)
    assert torch.allclose(a[padded.loss_mask], b[padded.loss_mask], atol=1e-5)


def test_without_the_block_mask_examples_would_see_each_other(model: torch.nn.Module) -> None:
    """The mask is what makes packing exact: dropping it changes the loss (the tests above can fail)."""
    seqs = _seqs()[:2]
    mb = collate_packed(seqs, 64, 0)
    assert mb.input_ids.shape[0] == 1
    n = sum(len(s.completion_ids) for s in seqs)
    leaky = MicroBatch(mb.input_ids, torch.ones_like(mb.input_ids), mb.loss_mask, mb.old_logprobs, mb.advantages,
                       position_ids=mb.position_ids, gather=mb.gather)
    with torch.no_grad():
        assert float(_sft_loss(model, leaky, n)) != pytest.approx(float(_sft_loss(model, mb, n)), rel=1e-4)
