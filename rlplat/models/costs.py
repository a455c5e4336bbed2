"""What a block variant costs: an analytic model for any hardware, and a measured proxy here.

The analytic model counts what sets a block's price on a GPU: parameters (weight memory and, at
small batch, the bytes each decode step reads), forward FLOPs per generated token (2 per
multiply-add, attention scores over ``context`` earlier tokens included), and KV-cache bytes per
token of context (zero for a block without attention). ``serving_costs`` scales them to a batch and
sequence length, as Puzzle's constraints are stated.

The measured proxy times block forwards on this machine (``measure_blocks_seconds``): plain
torch on a fixed number of threads, the variants in turn, round after round, so that they are
compared like for like; the end-to-end figure
that counts is vLLM's own generation throughput, which the NAS stage measures on the assembled child.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from rlplat.models.decilm_format import BlockConfig, HeteroLlamaConfig

K = TypeVar("K")


@dataclass(frozen=True)
class BlockCost:
    """One block's analytic cost: ``params``; forward ``flops_per_token`` when generating with
    ``context`` earlier tokens; ``kv_bytes_per_token`` of KV cache for each token of context."""

    params: int
    flops_per_token: float
    kv_bytes_per_token: int


def block_cost(config: HeteroLlamaConfig, block: BlockConfig, context: int, dtype_bytes: int = 2) -> BlockCost:
    """The analytic cost of ``block`` in a model shaped like ``config`` (see ``BlockCost``)."""
    h = config.hidden_size
    params, flops, kv_bytes = 0, 0.0, 0
    if block.attention.kind == "full" and block.attention.n_heads_in_group:
        kv_dim = (config.num_attention_heads // block.attention.n_heads_in_group) * config.head_dim
        proj = h * h * 2 + h * kv_dim * 2  # q and o; k and v
        params += proj + h  # + input_layernorm
        flops += 2 * proj + 2 * 2 * context * h  # projections; q.k and p.v over the context
        kv_bytes = 2 * kv_dim * dtype_bytes
    width = block.ffn.width(h)
    if width:
        params += 3 * h * width + h  # gate, up, down + post_attention_layernorm
        flops += 2 * 3 * h * width
    return BlockCost(params, flops, kv_bytes)


def model_params(config: HeteroLlamaConfig) -> int:
    """Every parameter of the model: blocks, embeddings, LM head (untied) and final norm."""
    blocks = sum(block_cost(config, b, 0).params for b in config.blocks)
    return blocks + 2 * config.vocab_size * config.hidden_size + config.hidden_size


@dataclass(frozen=True)
class ServingCosts:
    """A model's serving footprint at ``batch`` sequences of ``seq_len`` tokens: weight and KV-cache
    bytes, and forward FLOPs per generated token (averaged over the sequence)."""

    weight_bytes: int
    kv_cache_bytes: int
    flops_per_token: float


def serving_costs(config: HeteroLlamaConfig, batch: int, seq_len: int, dtype_bytes: int = 2) -> ServingCosts:
    """The analytic ``ServingCosts`` of ``config`` (the LM head's matrix product included)."""
    costs = [block_cost(config, b, seq_len // 2, dtype_bytes) for b in config.blocks]
    head_flops = 2.0 * config.hidden_size * config.vocab_size
    return ServingCosts(weight_bytes=model_params(config) * dtype_bytes,
                        kv_cache_bytes=batch * seq_len * sum(c.kv_bytes_per_token for c in costs),
                        flops_per_token=sum(c.flops_per_token for c in costs) + head_flops)


@torch.no_grad()
def measure_blocks_seconds(blocks: Mapping[K, nn.Module], hidden_size: int, batch: int, tokens: int,
                           rounds: int = 7, threads: int = 1) -> dict[K, float]:
    """Median seconds of one forward of each block of ``blocks`` (``DeciBlock``s) over ``batch`` x
    ``tokens`` random hidden states, on ``threads`` torch threads (restored afterwards).

    The blocks are timed in turn, round after round (after one warm-up round), so that a change in
    the machine's load during the measurement touches every block alike.
    """
    from rlplat.models.decilm import rope_cos_sin

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        inputs = {}
        for key, block in blocks.items():
            dtype = next(block.parameters(), torch.empty(0)).dtype
            x = torch.randn(batch, tokens, hidden_size, dtype=dtype, generator=torch.Generator().manual_seed(0))
            head_dim = getattr(getattr(block, "self_attn", None), "head_dim", None) or 2
            inputs[key] = (x, *rope_cos_sin(torch.arange(tokens).expand(batch, tokens), head_dim, 10000.0, dtype))
        times: dict[K, list[float]] = {key: [] for key in blocks}
        for round_ in range(rounds + 1):
            for key, block in blocks.items():
                start = time.perf_counter()
                block(*inputs[key], None)
                if round_:  # round 0 warms up
                    times[key].append(time.perf_counter() - start)
        return {key: statistics.median(t) for key, t in times.items()}
    finally:
        torch.set_num_threads(previous)
