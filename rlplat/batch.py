"""Training batches: from scored groups to per-rank, per-micro-batch padded tensors.

Padding is the hidden cost on CPU (DESIGN.md): completions are sorted by length before they are
cut into micro-batches, so each micro-batch pads only to its own longest sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TrainSequence:
    """One prompt + completion with what the loss needs.

    ``old_logprobs`` are the rollout engine's logprobs of ``completion_ids`` (empty for SFT).
    """

    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    old_logprobs: tuple[float, ...]
    advantage: float


@dataclass(frozen=True)
class TrainShard:
    """One rank's part of one optimizer step, plus the step's global normalisers.

    Attributes:
        sequences: This rank's sequences.
        num_tokens: Completion tokens in the whole optimizer step (all ranks).
        num_seqs: Sequences in the whole optimizer step (all ranks).
    """

    sequences: tuple[TrainSequence, ...]
    num_tokens: int
    num_seqs: int


@dataclass(frozen=True)
class MicroBatch:
    """Right-padded tensors of one micro-batch; loss positions are the completion tokens.

    Shapes: ``input_ids``/``attention_mask`` ``[B, L]``; ``loss_mask``/``old_logprobs``
    ``[B, L-1]`` aligned with next-token targets ``input_ids[:, 1:]``; ``advantages`` ``[B]``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor
    old_logprobs: torch.Tensor
    advantages: torch.Tensor


def split_for_ranks(seqs: Sequence[TrainSequence], world_size: int) -> list[TrainShard]:
    """Deal one optimizer step's sequences to ranks, balancing tokens (longest first, round-robin)."""
    if len(seqs) % world_size:
        raise ValueError(f"{len(seqs)} sequences do not split evenly over {world_size} learner ranks")
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i].completion_ids) - len(seqs[i].prompt_ids))
    shards: list[list[TrainSequence]] = [[] for _ in range(world_size)]
    for k, i in enumerate(order):
        shards[k % world_size].append(seqs[i])
    num_tokens = sum(len(s.completion_ids) for s in seqs)
    return [TrainShard(tuple(s), max(num_tokens, 1), len(seqs)) for s in shards]


def micro_batches(shard: TrainShard, micro_batch_size: int, pad_id: int) -> list[MicroBatch]:
    """Cut a shard into length-sorted micro-batches of ``micro_batch_size`` sequences."""
    seqs = sorted(shard.sequences, key=lambda s: len(s.prompt_ids) + len(s.completion_ids))
    return [collate(seqs[i:i + micro_batch_size], pad_id)
            for i in range(0, len(seqs), micro_batch_size)]


def collate(seqs: Sequence[TrainSequence], pad_id: int) -> MicroBatch:
    """Right-pad ``seqs`` into a ``MicroBatch``."""
    length = max(len(s.prompt_ids) + len(s.completion_ids) for s in seqs)
    b = len(seqs)
    input_ids = torch.full((b, length), pad_id, dtype=torch.long)
    attention = torch.zeros((b, length), dtype=torch.long)
    loss_mask = torch.zeros((b, length - 1), dtype=torch.bool)
    old_lp = torch.zeros((b, length - 1), dtype=torch.float32)
    for row, s in enumerate(seqs):
        p, c = len(s.prompt_ids), len(s.completion_ids)
        input_ids[row, :p + c] = torch.tensor(s.prompt_ids + s.completion_ids, dtype=torch.long)
        attention[row, :p + c] = 1
        # Target position t predicts token t+1: completion tokens are targets p-1 .. p+c-2.
        loss_mask[row, p - 1:p + c - 1] = True
        if s.old_logprobs:
            old_lp[row, p - 1:p + c - 1] = torch.tensor(s.old_logprobs, dtype=torch.float32)
    adv = torch.tensor([s.advantage for s in seqs], dtype=torch.float32)
    return MicroBatch(input_ids, attention, loss_mask, old_lp, adv)
