"""Cutting one rank's shard into micro-batches: by count or by token budget, padded or packed.

A micro-batch of right-padded rows computes ``rows x longest`` positions; sorting by length keeps
that close to the real tokens, and a token budget (``learner.max_tokens_per_micro_batch``) keeps
the work of every forward pass about equal however long the completions are. Packed rows
(``rlplat.algo.packing``) compute the examples' own tokens and little else. Which sequences share a
micro-batch never changes the loss: every aggregation divides by constants of the whole optimizer
step (``rlplat.algo.losses.aggregate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rlplat.algo.batching import MicroBatch, collate
from rlplat.algo.packing import collate_packed
from rlplat.types import TrainSequence


@dataclass(frozen=True)
class MicroBatching:
    """How a learner rank cuts its shard (``learner.*``, ``sft.pack_tokens``).

    Attributes:
        size: Sequences per micro-batch when there is no token budget.
        max_tokens: Token budget of a micro-batch: the positions its forward pass computes, i.e.
            sequences x the longest when padded, the sequences' tokens when packed; a sequence over
            the budget gets a micro-batch of its own. None: ``size`` sequences.
        pack_tokens: Pack the sequences of a micro-batch into rows of at most this many tokens;
            None: one right-padded row per sequence.
    """

    size: int
    max_tokens: int | None = None
    pack_tokens: int | None = None


def plan_micro_batches(lengths: Sequence[int], rule: MicroBatching, count: int | None = None) -> list[list[int]]:
    """Indices of the sequences of each micro-batch, shortest sequences first.

    Args:
        lengths: Tokens (prompt + completion) of each sequence.
        rule: Count or token budget.
        count: Make exactly this many micro-batches (at least as many as the rule needs, at most one
            per sequence) by halving the costliest: data-parallel ranks must run the same number of
            forward passes when collectives run inside them (ZeRO-2 gradient reduction, ZeRO-3
            gathers), so each rank plans with the largest count of any rank.

    Raises:
        ValueError: ``count`` below the rule's own count or above the number of sequences.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    if rule.max_tokens is None:
        groups = [order[i:i + rule.size] for i in range(0, len(order), rule.size)]
    else:
        groups = _fill(order, lengths, rule, rule.max_tokens)
    if count is None or count == len(groups):
        return groups
    if not len(groups) <= count <= len(lengths):
        raise ValueError(f"cannot cut {len(lengths)} sequences into {count} micro-batches "
                         f"(the rule needs {len(groups)})")
    while len(groups) < count:
        k = max((g for g in range(len(groups)) if len(groups[g]) > 1),
                key=lambda g: _cost([lengths[i] for i in groups[g]], rule))
        half = len(groups[k]) // 2
        groups[k:k + 1] = [groups[k][:half], groups[k][half:]]
    return groups


def _cost(lengths: Sequence[int], rule: MicroBatching) -> int:
    """Positions one micro-batch of these sequences computes (its share of the budget)."""
    return sum(lengths) if rule.pack_tokens is not None else len(lengths) * max(lengths)


def _fill(order: Sequence[int], lengths: Sequence[int], rule: MicroBatching, budget: int) -> list[list[int]]:
    """Consecutive sequences of ``order`` while the micro-batch stays within ``budget``."""
    groups: list[list[int]] = []
    for i in order:
        if groups and _cost([lengths[j] for j in groups[-1]] + [lengths[i]], rule) <= budget:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def collate_micro_batch(seqs: Sequence[TrainSequence], rule: MicroBatching, pad_id: int) -> MicroBatch:
    """One micro-batch of ``seqs``: packed rows or padded rows, per-sequence tensors in their order."""
    return collate(seqs, pad_id) if rule.pack_tokens is None else collate_packed(seqs, rule.pack_tokens, pad_id)


def micro_batches(seqs: Sequence[TrainSequence], rule: MicroBatching, pad_id: int,
                  count: int | None = None) -> list[MicroBatch]:
    """``seqs`` cut by ``plan_micro_batches`` and collated."""
    lengths = [len(s.prompt_ids) + len(s.completion_ids) for s in seqs]
    return [collate_micro_batch([seqs[i] for i in group], rule, pad_id)
            for group in plan_micro_batches(lengths, rule, count)]
