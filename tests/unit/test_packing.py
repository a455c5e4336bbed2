"""Packed supervised rows compute exactly what the unpacked batch computes (real tiny Llama)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlplat.algo.batching import collate
from rlplat.algo.logprobs import token_logprobs
from rlplat.algo.packing import collate_packed, pack_rows, packed_micro_batches
from rlplat.types import TrainSequence


def test_first_fit_decreasing_fills_rows_and_keeps_every_example_once() -> None:
    lengths = [7, 3, 5, 2, 9, 4]
    rows = pack_rows(lengths, 10)
    assert sorted(i for r in rows for i in r) == list(range(6))
    assert all(sum(lengths[i] for i in r) <= 10 for r in rows)
    assert rows == [[4], [0, 1], [2, 5], [3]]  # longest first, each into the first row with room
    assert pack_rows([12], 10) == [[0]]  # too long: a row of its own
    with pytest.raises(ValueError):
        pack_rows([1], 0)


def _seqs() -> list[TrainSequence]:
    g = torch.Generator().manual_seed(0)
    out = []
    for p, c in ((3, 5), (6, 2), (2, 7), (4, 4), (1, 3)):
        ids = torch.randint(5, 90, (p + c,), generator=g).tolist()
        out.append(TrainSequence(tuple(ids[:p]), tuple(ids[p:]), (), 0.0))
    return out


def _sft_loss(model: torch.nn.Module, mb, n_tokens: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
    logits = model(input_ids=mb.input_ids, attention_mask=mb.attention_mask, position_ids=mb.position_ids,
                   use_cache=False).logits[:, :-1]
    lp = token_logprobs(logits, mb.input_ids[:, 1:])
    return -(torch.where(mb.loss_mask, lp, torch.zeros_like(lp))).sum() / n_tokens


def test_packed_loss_and_gradients_equal_the_unpacked_batch(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from rlplat.models.tiny import build_tiny_llama

    model = AutoModelForCausalLM.from_pretrained(build_tiny_llama(tmp_path / "m"), dtype=torch.float32)
    seqs = _seqs()
    n_tokens = sum(len(s.completion_ids) for s in seqs)
    plain = _sft_loss(model, collate(seqs, 0), n_tokens)
    (g_plain,) = torch.autograd.grad(plain, [model.model.embed_tokens.weight])
    batches = packed_micro_batches(seqs, row_tokens=12, rows_per_batch=2, pad_id=0)
    assert sum(int(b.loss_mask.sum()) for b in batches) == n_tokens
    assert sum(b.input_ids.numel() for b in batches) < collate(seqs, 0).input_ids.numel()  # less padding
    packed = sum(_sft_loss(model, b, n_tokens) for b in batches)
    (g_packed,) = torch.autograd.grad(packed, [model.model.embed_tokens.weight])
    assert float(packed.detach()) == pytest.approx(float(plain.detach()), rel=1e-5)
    assert torch.allclose(g_packed, g_plain, atol=1e-6)


def test_without_the_block_mask_examples_would_see_each_other(tmp_path: Path) -> None:
    """The mask is what makes packing exact: dropping it changes the loss (the test above can fail)."""
    from transformers import AutoModelForCausalLM

    from rlplat.models.tiny import build_tiny_llama

    model = AutoModelForCausalLM.from_pretrained(build_tiny_llama(tmp_path / "m"), dtype=torch.float32)
    seqs = _seqs()[:2]
    mb = collate_packed([seqs], 0)
    n = sum(len(s.completion_ids) for s in seqs)
    leaky = type(mb)(mb.input_ids, torch.ones_like(mb.input_ids), mb.loss_mask, mb.old_logprobs, mb.advantages,
                     position_ids=mb.position_ids)
    assert float(_sft_loss(model, leaky, n)) != pytest.approx(float(_sft_loss(model, mb, n)), rel=1e-4)
