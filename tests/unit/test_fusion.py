"""rlplat.models.fusion: FFN Fusion is exact (the fused layer equals the parallel FFNs it replaces),
keeps every other weight, saves as a DeciLM block, and chooses runs by the dependency measure."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlplat.models.decilm import DeciBlock, HeteroLlamaForCausalLM, load_decilm, save_decilm
from rlplat.models.decilm_format import AttentionConfig, BlockConfig, FFNConfig, HeteroLlamaConfig
from rlplat.models.fusion import ffn_only_runs, fuse_runs, fused_block_config, run_dependency, split_run

ATTN = AttentionConfig("full", 2)
NONE = AttentionConfig("none")
FFN1 = FFNConfig("full", ffn_mult=1.0)  # width 256 at hidden 128
FFN2 = FFNConfig("full", ffn_mult=2.0)  # width 256 (rounded up)

# attention block, a run of three FFN-only blocks, an attention block, a run of two, a no-op block.
BLOCKS = (
    BlockConfig(ATTN, FFN1),
    BlockConfig(NONE, FFN1), BlockConfig(NONE, FFN2), BlockConfig(NONE, FFNConfig("full", intermediate_size=64)),
    BlockConfig(ATTN, FFNConfig("none")),
    BlockConfig(NONE, FFN1), BlockConfig(NONE, FFN1),
    BlockConfig(NONE, FFNConfig("none")),
)


def _model(seed: int = 0) -> HeteroLlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = HeteroLlamaConfig(vocab_size=64, hidden_size=128, num_attention_heads=4, blocks=BLOCKS, dtype="float64")
    model = HeteroLlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # norm scales away from 1, so that folding them into the weights is tested
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight"):
                p.uniform_(0.5, 1.5)
    return model


def _ffn(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What an attention-free block's FFN adds to the residual stream ``x``."""
    assert isinstance(block, DeciBlock) and block.mlp is not None
    return block.mlp(block.post_attention_layernorm(x))


def _parallel_forward(model: HeteroLlamaForCausalLM, ids: torch.Tensor, runs: list[tuple[int, int]]) -> torch.Tensor:
    """Reference: the original model, each run computed in parallel (every FFN fed the run's input)."""
    layers, starts = model.model.layers, dict(runs)
    x = model.model.embed_tokens(ids)
    from rlplat.models.decilm import rope_cos_sin

    cos, sin = rope_cos_sin(torch.arange(ids.shape[1]).expand_as(ids), model.config.head_dim, 10000.0, x.dtype)
    i = 0
    while i < len(layers):
        if i in starts:
            x = x + sum(_ffn(layers[k], x) for k in range(i, starts[i]))
            i = starts[i]
        else:
            x = layers[i](x, cos, sin, None)
            i += 1
    return model.lm_head(model.model.norm(x))


def test_runs_are_found() -> None:
    assert ffn_only_runs(BLOCKS) == [(1, 4), (5, 7)]
    assert ffn_only_runs(BLOCKS, min_length=3) == [(1, 4)]


def test_fusion_is_exact_and_keeps_the_rest(tmp_path: Path) -> None:
    model = _model()
    ids = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(3))
    runs = [(1, 4), (5, 7)]
    fused = fuse_runs(model, runs)
    assert len(fused.config.blocks) == len(BLOCKS) - 3
    assert fused.config.blocks[1] == BlockConfig(NONE, FFNConfig("full", intermediate_size=256 + 256 + 64))
    assert fused.config.blocks[3] == BlockConfig(NONE, FFNConfig("full", intermediate_size=512))
    with torch.no_grad():
        expected = _parallel_forward(model, ids, runs)
        got = fused(ids).logits
        original = model(ids).logits
    assert torch.allclose(got, expected, atol=1e-10, rtol=1e-10)
    assert not torch.allclose(got, original, atol=1e-4), "fusion changes the function (sequential -> parallel)"
    # untouched blocks, embeddings and head are copied as they are
    assert torch.equal(fused.get_parameter("model.layers.2.self_attn.q_proj.weight"),
                       model.get_parameter("model.layers.4.self_attn.q_proj.weight"))
    assert torch.equal(fused.lm_head.weight, model.lm_head.weight)
    # the fused model is an ordinary DeciLM directory
    back = load_decilm(save_decilm(fused, tmp_path / "fused"))
    with torch.no_grad():
        assert torch.equal(back(ids).logits, got)


def test_fusing_nothing_copies_the_model() -> None:
    model = _model()
    ids = torch.randint(0, 64, (1, 6))
    with torch.no_grad():
        assert torch.equal(fuse_runs(model, [])(ids).logits, model(ids).logits)


def test_fusion_refuses_bad_runs() -> None:
    with pytest.raises(ValueError, match="attention-free"):
        fuse_runs(_model(), [(0, 2)])
    with pytest.raises(ValueError, match="overlap"):
        fuse_runs(_model(), [(1, 3), (2, 4)])
    with pytest.raises(ValueError, match="attention-free"):
        fused_block_config([BlockConfig(NONE, FFNConfig("none"))], 128)


def test_dependency_measure() -> None:
    model = _model()
    hidden = torch.randn(2, 8, 128, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # block 2 (index 1 of the run) adds nothing: nothing after it depends on it
        model.get_parameter("model.layers.2.mlp.down_proj.weight").zero_()
    dep = run_dependency(model, (1, 4), hidden)
    assert dep.shape == (3, 3)
    assert float(dep[1, 2]) == pytest.approx(0.0, abs=1e-12)
    assert float(dep[0, 1]) > 0 and float(dep[0, 2]) > 0
    assert torch.equal(dep.tril(), torch.zeros(3, 3))


def test_split_run_by_threshold() -> None:
    dep = torch.zeros(5, 5)
    dep[1, 3] = 0.5  # block 3 of the run depends on block 1: they may not share a fused layer
    assert split_run((10, 15), dep, threshold=0.1) == [(10, 13), (13, 15)]
    assert split_run((10, 15), dep, threshold=0.6) == [(10, 15)]
    dep[3, 4] = 0.5
    assert split_run((10, 15), dep, threshold=0.1) == [(10, 13)]
    with pytest.raises(ValueError, match="does not fit"):
        split_run((0, 3), dep, 0.1)
