"""Ulysses sequence parallelism for the learners: each sequence split over ``N`` ranks.

``learner.sequence_parallel=N`` groups consecutive learner ranks in fours, twos... (``N`` each): the
ranks of a group receive the same shard of the step and each computes ``1/N`` of every row's
positions, so each keeps ``1/N`` of the activations (what makes a 30k-token LN-Ultra response fit,
docs/scale.md). Everything but attention is position-wise. Attention is DeepSpeed's Ulysses
(``deepspeed.sequence.layer.DistributedAttention``): an all-to-all turns "my positions, every head"
into "every position, my heads", attention runs over whole sequences, and a second all-to-all turns
it back. Its backward sends each rank's gradients to the ranks whose keys and values it read.

The loss stays the code the data-parallel path runs: each rank computes the log-probs (and entropy)
of its own positions, and ``gather_positions`` assembles the whole rows on every rank of the group.
Every rank then computes the same loss from the same tensors, so the gradient of a rank's own
positions is already complete on that rank: the gather's backward keeps it and adds nothing from
the others. Summed over the group (DeepSpeed's gradient all-reduce runs over every rank), each
position counts exactly once, so the loss, log-probs and gradients equal the unsplit run's.

Masks: right-padded rows need only causal attention over the whole sequence (no valid token sees a
later pad), so they pass no mask; packed rows pass their ``[R, 1, L, L]`` block mask, extended to
the padded length, and every rank's attention reads it whole.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rlplat.algo.batching import MicroBatch
from rlplat.models import decilm

# The name under which transformers' models find the Ulysses attention (``config._attn_implementation``).
ATTENTION_NAME = "rlplat_ulysses"


@dataclass(frozen=True)
class SequenceGroup:
    """This rank's sequence-parallel group: ``size`` consecutive ranks, this one ``index`` among them."""

    group: Any  # torch.distributed.ProcessGroup
    size: int
    index: int


def sequence_groups(world_size: int, size: int, rank: int) -> SequenceGroup:
    """Create every group (a collective: every rank calls it, with the same arguments but ``rank``)
    and return ``rank``'s. Ranks ``k*size .. k*size+size-1`` form group ``k``."""
    if world_size % size:
        raise ValueError(f"{world_size} learner ranks do not split into sequence-parallel groups of {size}")
    mine = None
    for first in range(0, world_size, size):
        group = torch.distributed.new_group(list(range(first, first + size)))
        if first <= rank < first + size:
            mine = SequenceGroup(group, size, rank - first)
    assert mine is not None
    return mine


def install(model: Any, sp: SequenceGroup) -> None:
    """Make ``model``'s attention Ulysses attention over ``sp`` (before DeepSpeed wraps it).

    A transformers model gets it through its attention registry; rlplat's DeciLM module through
    each block's ``Attention.core``.
    """
    if isinstance(model, decilm.HeteroLlamaForCausalLM):
        for module in model.modules():
            if isinstance(module, decilm.Attention):
                module.core = lambda q, k, v, mask: _ulysses(q, k, v, mask, None, sp)
        return
    from transformers import AttentionInterface

    def attention(module: torch.nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                   dropout: float = 0.0, scaling: float | None = None, sliding_window: int | None = None,
                   **_: Any) -> tuple[Tensor, None]:
        del module, dropout  # no dropout in RL training
        if sliding_window is not None and query.shape[2] * sp.size > sliding_window:
            # Whole-sequence attention would silently differ from the model's windowed attention.
            raise ValueError(f"a {query.shape[2] * sp.size}-token row is longer than the model's sliding window "
                             f"({sliding_window}), which sequence-parallel attention does not apply; "
                             "set learner.sequence_parallel=1 for this model")
        return _ulysses(query, key, value, attention_mask, scaling, sp), None

    AttentionInterface.register(ATTENTION_NAME, attention)
    model.config._attn_implementation = ATTENTION_NAME


def _ulysses(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, scale: float | None,
             sp: SequenceGroup) -> Tensor:
    """Attention of this rank's positions over whole sequences. ``query`` ``[B, H, T/N, D]``, ``key``
    and ``value`` ``[B, H_kv, T/N, D]`` (transformers' layout), ``mask`` None (causal) or
    ``[B, 1, T, T]`` bool; returns ``[B, T/N, H, D]``."""
    from deepspeed.sequence.layer import DistributedAttention

    def local(q: Tensor, k: Tensor, v: Tensor) -> Tensor:  # [B, T, heads/N, D] each
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask,
                                             is_causal=mask is None, scale=scale, enable_gqa=k.shape[2] != q.shape[2])
        return out.transpose(1, 2)

    # Batch first; the all-to-all scatters heads (dim 2) and gathers positions (dim 1).
    attend = DistributedAttention(local, sp.group, scatter_idx=2, gather_idx=1)
    out: Tensor = attend(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), 0)
    return out


@dataclass(frozen=True)
class SequenceShard:
    """One rank's part of a micro-batch's rows: positions ``start .. start + T/N - 1`` of rows padded
    to ``T`` (a multiple of ``N``). ``targets``: the next token of each of those positions (the
    padding token past a row's end); ``attention_mask``: None, or the whole rows' block mask."""

    input_ids: Tensor
    position_ids: Tensor
    targets: Tensor
    attention_mask: Tensor | None
    length: int  # L: the micro-batch's row length before padding to a multiple of N


def shard_positions(mb: MicroBatch, sp: SequenceGroup, pad_id: int) -> SequenceShard:
    """This rank's positions of ``mb``'s rows (see ``SequenceShard``)."""
    rows, length = mb.input_ids.shape
    padded = -(-length // sp.size) * sp.size
    extra = padded - length
    ids = F.pad(mb.input_ids, (0, extra + 1), value=pad_id)  # one more: the last position's target
    positions = mb.position_ids if mb.position_ids is not None else torch.arange(
        length, device=ids.device).expand(rows, length)
    positions = torch.cat([positions, positions[:, -1:] + torch.arange(1, extra + 1, device=ids.device)], dim=1)
    mask = None
    if mb.attention_mask.dim() == 4:
        # The block mask, its new rows and columns attending to themselves only.
        mask = F.pad(mb.attention_mask, (0, extra, 0, extra), value=False)
        if extra:
            mask[:, :, length:, length:] = torch.eye(extra, dtype=torch.bool, device=mask.device)
    n = padded // sp.size
    start = sp.index * n
    return SequenceShard(ids[:, start:start + n], positions[:, start:start + n], ids[:, start + 1:start + n + 1],
                         mask, length)


class _GatherPositions(torch.autograd.Function):
    """All-gather along dim 1 whose backward keeps this rank's slice of the gradient (see the module
    docstring: every rank of the group differentiates the same loss)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, sp: SequenceGroup) -> Tensor:
        ctx.index, ctx.width = sp.index, x.shape[1]
        parts = [torch.empty_like(x) for _ in range(sp.size)]
        torch.distributed.all_gather(parts, x.contiguous(), group=sp.group)
        return torch.cat(parts, dim=1)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        start = ctx.index * ctx.width
        return grad[:, start:start + ctx.width], None


def gather_positions(x: Tensor, sp: SequenceGroup, shard: SequenceShard) -> Tensor:
    """The whole rows ``[B, L-1, ...]`` of a per-position tensor ``x`` ``[B, T/N, ...]`` computed by each
    rank of the group on its positions (differentiable, see ``_GatherPositions``)."""
    whole: Tensor = _GatherPositions.apply(x, sp)
    return whole[:, :shard.length - 1]


@contextlib.contextmanager
def whole_sequences(model: Any) -> Iterator[None]:
    """Plain attention inside, for passes where every rank computes whole sequences on its own
    (greedy decoding, to compare with the engines)."""
    if isinstance(model, decilm.HeteroLlamaForCausalLM):
        cores = [(m, m.core) for m in model.modules() if isinstance(m, decilm.Attention)]
        for m, _ in cores:
            m.core = decilm.sdpa
        try:
            yield
        finally:
            for m, core in cores:
                m.core = core
        return
    saved = model.config._attn_implementation
    model.config._attn_implementation = "sdpa"
    try:
        yield
    finally:
        model.config._attn_implementation = saved
