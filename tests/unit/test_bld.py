"""rlplat.models.bld: block-wise local distillation lowers each variant's loss, the parent's own
variants give back the parent, and a block's score is the KL of the parent with only it replaced."""

from __future__ import annotations

import pytest
import torch

from rlplat.models.bld import (
    NO_ATTENTION,
    NO_FFN,
    assemble,
    block_inputs,
    build_layer_library,
    final_logits,
    init_attention,
    kl_per_token,
    normalized_mse,
    parent_targets,
    replacement_kl,
)
from rlplat.models.decilm import HeteroLlamaForCausalLM
from rlplat.models.decilm_format import AttentionConfig, BlockConfig, FFNConfig, HeteroLlamaConfig

PARENT_ATTN = AttentionConfig("full", 1)  # 4 KV heads
PARENT_FFN = FFNConfig("full", ffn_mult=6.0)  # width 512 at hidden 128
GQA = AttentionConfig("full", 2)
NARROW = FFNConfig("full", ffn_mult=3.0)  # width 256


@pytest.fixture(scope="module")
def parent() -> HeteroLlamaForCausalLM:
    torch.manual_seed(0)
    cfg = HeteroLlamaConfig(vocab_size=64, hidden_size=128, num_attention_heads=4,
                            blocks=(BlockConfig(PARENT_ATTN, PARENT_FFN),) * 3)
    return HeteroLlamaForCausalLM(cfg, init_std=0.05).eval()


@pytest.fixture(scope="module")
def states(parent: HeteroLlamaForCausalLM) -> list[torch.Tensor]:
    ids = torch.randint(0, 64, (16, 12), generator=torch.Generator().manual_seed(1))
    return block_inputs(parent, ids)


def _library(parent: HeteroLlamaForCausalLM, states: list[torch.Tensor], index: int, steps: int = 40):
    return build_layer_library(parent, index, states[index], [PARENT_ATTN, GQA, NO_ATTENTION],
                               [PARENT_FFN, NARROW, NO_FFN], steps=steps, lr=3e-3, batch_size=8)


def test_block_inputs_are_the_residual_stream(parent: HeteroLlamaForCausalLM, states: list[torch.Tensor]) -> None:
    assert len(states) == 4
    with torch.no_grad():
        logits = final_logits(parent, states[-1])
        ids = torch.randint(0, 64, (16, 12), generator=torch.Generator().manual_seed(1))
        assert torch.allclose(logits, parent(ids).logits, atol=1e-5)
    a, y = parent_targets(parent, 1, states[1])
    assert torch.allclose(y, states[2], atol=1e-6) and not torch.allclose(a, states[1])


def test_bld_loss_decreases(parent: HeteroLlamaForCausalLM, states: list[torch.Tensor]) -> None:
    lib = _library(parent, states, 1, steps=60)
    assert set(lib.losses) == {GQA, NARROW}  # the parent's own and "none" are not trained
    for variant, losses in lib.losses.items():
        assert len(losses) == 60
        first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
        assert last < 0.8 * first, (variant, first, last)
        assert last < 1.0, "a trained variant beats removing the sub-block"


def test_parent_variants_give_back_the_parent(parent: HeteroLlamaForCausalLM, states: list[torch.Tensor]) -> None:
    libs = [_library(parent, states, i, steps=2) for i in range(3)]
    child = assemble(parent, parent.config.blocks, libs)
    ids = torch.randint(0, 64, (2, 10))
    with torch.no_grad():
        assert torch.equal(child(ids).logits, parent(ids).logits)
    assert replacement_kl(parent, 1, parent.config.blocks[1], libs[1], states[1], final_logits(parent, states[-1])) == pytest.approx(0.0, abs=1e-6)


def test_replacement_kl_is_the_assembled_childs(parent: HeteroLlamaForCausalLM, states: list[torch.Tensor]) -> None:
    libs = [_library(parent, states, i, steps=5) for i in range(3)]
    block = BlockConfig(GQA, NO_FFN)
    kl = replacement_kl(parent, 2, block, libs[2], states[2], final_logits(parent, states[-1]))
    child = assemble(parent, (*parent.config.blocks[:2], block), libs)
    ids = torch.randint(0, 64, (16, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = kl_per_token(parent(ids).logits, child(ids).logits)
    assert kl > 0 and kl == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match="no variant"):
        assemble(parent, (*parent.config.blocks[:2], BlockConfig(AttentionConfig("full", 4), NO_FFN)), libs)


def test_kv_merging_and_the_no_op_scale(parent: HeteroLlamaForCausalLM, states: list[torch.Tensor]) -> None:
    same = init_attention(parent, 0, PARENT_ATTN)  # merging groups of one head copies them
    parent_k = parent.get_parameter("model.layers.0.self_attn.k_proj.weight")
    assert torch.equal(same.get_parameter("self_attn.k_proj.weight"), parent_k)
    merged = init_attention(parent, 0, GQA)
    k = parent_k.view(2, 2, 32, 128).mean(1).reshape(64, 128)
    assert torch.equal(merged.get_parameter("self_attn.k_proj.weight"), k)
    x, target = states[0], parent_targets(parent, 0, states[0])[0]
    assert float(normalized_mse(x, target, x)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="n_heads_in_group"):  # 3 does not divide 4 heads
        init_attention(parent, 0, AttentionConfig("full", 3))
