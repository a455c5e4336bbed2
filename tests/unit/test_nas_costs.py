"""rlplat.models.costs: the analytic model counts exactly the parameters the module holds, and its
FLOPs and KV bytes follow each block's shape."""

from __future__ import annotations

import torch

from rlplat.models.costs import block_cost, measure_blocks_seconds, model_params, serving_costs
from rlplat.models.decilm import HeteroLlamaForCausalLM
from rlplat.models.decilm_format import AttentionConfig, BlockConfig, FFNConfig, HeteroLlamaConfig

BLOCKS = (
    BlockConfig(AttentionConfig("full", 1), FFNConfig("full", ffn_mult=2.0)),
    BlockConfig(AttentionConfig("full", 4), FFNConfig("full", intermediate_size=64)),
    BlockConfig(AttentionConfig("none"), FFNConfig("full", ffn_mult=1.0)),
    BlockConfig(AttentionConfig("full", 2), FFNConfig("none")),
    BlockConfig(AttentionConfig("none"), FFNConfig("none")),
)
CONFIG = HeteroLlamaConfig(vocab_size=50, hidden_size=128, num_attention_heads=4, blocks=BLOCKS)


def test_parameter_counts_are_the_modules() -> None:
    model = HeteroLlamaForCausalLM(CONFIG)
    assert model_params(CONFIG) == sum(p.numel() for p in model.parameters())
    for layer, block in zip(model.model.layers, BLOCKS):
        assert block_cost(CONFIG, block, 0).params == sum(p.numel() for p in layer.parameters())


def test_flops_and_kv_follow_the_shape() -> None:
    full, gqa4, no_attn, no_ffn, no_op = (block_cost(CONFIG, b, context=100, dtype_bytes=2) for b in BLOCKS)
    assert full.kv_bytes_per_token == 2 * 128 * 2 and gqa4.kv_bytes_per_token == 2 * 32 * 2
    assert no_attn.kv_bytes_per_token == 0 and no_op == block_cost(CONFIG, BLOCKS[4], 0) and no_op.flops_per_token == 0
    assert no_attn.flops_per_token == 2 * 3 * 128 * 256
    assert no_ffn.flops_per_token == 2 * (2 * 128 * 128 + 2 * 128 * 64) + 4 * 100 * 128
    # more context costs attention blocks more, FFN-only blocks nothing
    assert block_cost(CONFIG, BLOCKS[0], 200).flops_per_token > full.flops_per_token
    assert block_cost(CONFIG, BLOCKS[2], 200).flops_per_token == no_attn.flops_per_token
    serving = serving_costs(CONFIG, batch=4, seq_len=64)
    assert serving.kv_cache_bytes == 4 * 64 * sum(block_cost(CONFIG, b, 0).kv_bytes_per_token for b in BLOCKS)
    assert serving.weight_bytes == 2 * model_params(CONFIG)


def test_measured_seconds_are_reported_and_threads_restored() -> None:
    model = HeteroLlamaForCausalLM(CONFIG).eval()
    threads = torch.get_num_threads()
    seconds = measure_blocks_seconds(dict(enumerate(model.model.layers)), 128, batch=2, tokens=32, rounds=3)
    assert torch.get_num_threads() == threads, "the thread count is restored"
    assert sorted(seconds) == list(range(len(BLOCKS))) and all(s > 0 for s in seconds.values())  # no comparison between them: a shared machine's times vary
