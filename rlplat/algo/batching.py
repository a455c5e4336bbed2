"""From train sequences to optimizer steps, learner ranks and padded micro-batches (pure torch).

The paper draws 72 prompts x 16 samples = 1152 samples per rollout and trains with a global batch
of 576, so each rollout yields exactly 2 optimizer steps (LN §5.1); the second step is mildly
off-policy, which is what the clipped ratio in ``losses.py`` is for. Each optimizer step is dealt
to the data-parallel ranks balancing tokens, and each rank cuts its share into micro-batches sorted
by length, so a micro-batch pads only to its own longest sequence (padding is the hidden cost on
CPU, docs/design.md); ``rlplat.algo.microbatches`` cuts by count or token budget, padded or packed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rlplat.types import TrainSequence, TrainShard


@dataclass(frozen=True)
class MicroBatch:
    """Right-padded tensors of one micro-batch; loss positions are the completion tokens.

    Shapes: ``input_ids``/``attention_mask`` ``[B, L]``; ``loss_mask``/``old_logprobs``
    ``[B, L-1]`` aligned with next-token targets ``input_ids[:, 1:]``; ``advantages`` ``[B]``;
    ``learner_logprobs`` like ``old_logprobs`` when every sequence carries them, else None.
    Packed rows (``rlplat.algo.packing``): ``input_ids`` ``[R, L]``, a ``[R, 1, L, L]`` bool
    ``attention_mask`` and ``position_ids`` ``[R, L]`` that restart at each example hold the ``B``
    sequences in ``R`` rows, while the per-sequence tensors keep the padded layout above; ``gather``
    (row and column index, each ``[B, L'-1]``) says where each sequence's targets lie in the rows,
    and :meth:`per_sequence` moves a per-target tensor of the rows into that layout.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor
    old_logprobs: torch.Tensor
    advantages: torch.Tensor
    learner_logprobs: torch.Tensor | None = None
    position_ids: torch.Tensor | None = None
    gather: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def num_sequences(self) -> int:
        """Sequences in the micro-batch (rows of the per-sequence tensors)."""
        return int(self.loss_mask.shape[0])

    def per_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """A ``[rows, L-1, ...]`` tensor aligned with ``input_ids[:, 1:]`` in the per-sequence
        layout ``[B, T, ...]`` of ``loss_mask`` (itself when not packed; differentiable). Positions
        past a sequence's end hold arbitrary values, as padding does: select with ``loss_mask``."""
        if self.gather is None:
            return x
        rows, cols = self.gather
        return x[rows, cols]

    def to(self, device: torch.device) -> MicroBatch:
        """The same tensors on ``device`` (no copy when they are there already)."""
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        gather = None if self.gather is None else (self.gather[0].to(device), self.gather[1].to(device))
        return MicroBatch(self.input_ids.to(device), self.attention_mask.to(device), self.loss_mask.to(device),
                          self.old_logprobs.to(device), self.advantages.to(device), move(self.learner_logprobs),
                          move(self.position_ids), gather)


def num_optimizer_steps(prompts: int, samples_per_prompt: int, global_batch: int) -> int:
    """Number of optimizer steps one rollout yields.

    Args:
        prompts: Prompts per rollout (72 in the paper).
        samples_per_prompt: Samples per prompt, the GRPO group size (16).
        global_batch: Samples per optimizer step across all data-parallel ranks (576).

    Returns:
        ``prompts * samples_per_prompt // global_batch`` (2 for the paper's numbers).

    Raises:
        ValueError: a non-positive argument, or samples not divisible by ``global_batch``
            (a partial last step would silently weigh its samples differently).
    """
    for name, value in (
        ("prompts", prompts),
        ("samples_per_prompt", samples_per_prompt),
        ("global_batch", global_batch),
    ):
        if value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    samples = prompts * samples_per_prompt
    if samples % global_batch:
        raise ValueError(
            f"{prompts} prompts x {samples_per_prompt} samples = {samples} samples per rollout is not a "
            f"multiple of the global batch {global_batch}; choose a global batch that divides {samples}"
        )
    return samples // global_batch


def split_for_ranks(seqs: Sequence[TrainSequence], world_size: int, on_policy: bool = False) -> list[TrainShard]:
    """Deal one optimizer step's sequences to ranks, balancing tokens (longest first, round-robin);
    ``on_policy``: see ``TrainShard``."""
    if len(seqs) % world_size:
        raise ValueError(f"{len(seqs)} sequences do not split evenly over {world_size} learner ranks")
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i].completion_ids) - len(seqs[i].prompt_ids))
    shards: list[list[TrainSequence]] = [[] for _ in range(world_size)]
    for k, i in enumerate(order):
        shards[k % world_size].append(seqs[i])
    num_tokens = sum(len(s.completion_ids) for s in seqs)
    return [TrainShard(tuple(s), max(num_tokens, 1), len(seqs), on_policy) for s in shards]


def collate(seqs: Sequence[TrainSequence], pad_id: int) -> MicroBatch:
    """Right-pad ``seqs`` into a ``MicroBatch``.

    Raises:
        ValueError: a sequence without prompt tokens (its first completion token would have no
            position to be predicted from).
    """
    if any(not s.prompt_ids for s in seqs):
        raise ValueError("every train sequence needs at least one prompt token (e.g. BOS)")
    length = max(len(s.prompt_ids) + len(s.completion_ids) for s in seqs)
    b = len(seqs)
    input_ids = torch.full((b, length), pad_id, dtype=torch.long)
    attention = torch.zeros((b, length), dtype=torch.long)
    loss_mask = torch.zeros((b, length - 1), dtype=torch.bool)
    old_lp = torch.zeros((b, length - 1), dtype=torch.float32)
    with_learner = all(s.learner_logprobs for s in seqs)
    learner_lp = torch.zeros_like(old_lp) if with_learner else None
    for row, s in enumerate(seqs):
        p, c = len(s.prompt_ids), len(s.completion_ids)
        input_ids[row, :p + c] = torch.tensor(s.prompt_ids + s.completion_ids, dtype=torch.long)
        attention[row, :p + c] = 1
        # Target position t predicts token t+1: completion tokens are targets p-1 .. p+c-2.
        loss_mask[row, p - 1:p + c - 1] = True
        if s.old_logprobs:
            old_lp[row, p - 1:p + c - 1] = torch.tensor(s.old_logprobs, dtype=torch.float32)
        if learner_lp is not None:
            learner_lp[row, p - 1:p + c - 1] = torch.tensor(s.learner_logprobs, dtype=torch.float32)
    adv = torch.tensor([s.advantage for s in seqs], dtype=torch.float32)
    return MicroBatch(input_ids, attention, loss_mask, old_lp, adv, learner_lp)
