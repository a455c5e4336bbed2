"""Sequence packing: several examples per row, attention kept within each (SFT and GRPO steps).

Padding is compute spent on nothing (a quarter of the positions in the GRPO step measured in
docs/benchmarks.md). A packed row concatenates examples up to ``row_tokens`` tokens; each example's
positions restart at 0, and a block-diagonal causal mask lets a token see only earlier tokens of its
own example, so the packed row computes exactly what the examples would compute one by one (the
tests check the loss and gradients against the unpacked batch, here and through DeepSpeed). Padding at a row's end attends to
itself only (a row with nothing to attend to would give NaN in softmax).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from rlplat.algo.batching import MicroBatch, collate
from rlplat.types import TrainSequence


def pack_rows(lengths: Sequence[int], row_tokens: int) -> list[list[int]]:
    """Indices of the examples in each row: first-fit decreasing by length, every row at most
    ``row_tokens`` tokens (an example longer than that gets a row of its own)."""
    if row_tokens <= 0:
        raise ValueError(f"row_tokens must be positive, got {row_tokens}")
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda k: (-lengths[k], k)):
        slot = next((r for r, free in enumerate(room) if free >= lengths[i]), None)
        if slot is None:
            rows.append([i])
            room.append(row_tokens - lengths[i])
        else:
            rows[slot].append(i)
            room[slot] -= lengths[i]
    return rows


def collate_packed(seqs: Sequence[TrainSequence], row_tokens: int, pad_id: int) -> MicroBatch:
    """``seqs`` packed into rows of at most ``row_tokens`` tokens (``pack_rows``), as a ``MicroBatch``.

    The rows: ``input_ids`` ``[R, L]``, ``attention_mask`` ``[R, 1, L, L]`` (bool, True where a query
    may attend a key), ``position_ids`` restarting at each example. Everything per sequence
    (``loss_mask``, ``old_logprobs``, ``advantages``, ``learner_logprobs``) is exactly what
    ``collate(seqs)`` makes, in the order of ``seqs``, and ``gather`` maps it onto the rows, so the
    loss is computed on the same ``[B, T]`` tensors as the padded path (``MicroBatch.per_sequence``).
    """
    lengths = [len(s.prompt_ids) + len(s.completion_ids) for s in seqs]
    rows = pack_rows(lengths, row_tokens)
    length = max(sum(lengths[i] for i in row) for row in rows)
    per_seq = collate(seqs, pad_id)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), length), dtype=torch.long)
    segment = torch.full((len(rows), length), -1, dtype=torch.long)
    targets = per_seq.loss_mask.shape[1]
    gather_rows = torch.zeros((len(seqs), targets), dtype=torch.long)
    gather_cols = torch.zeros((len(seqs), targets), dtype=torch.long)
    for r, row in enumerate(rows):
        start = 0
        for k, i in enumerate(row):
            n = lengths[i]
            input_ids[r, start:start + n] = per_seq.input_ids[i, :n]
            positions[r, start:start + n] = torch.arange(n)
            segment[r, start:start + n] = k
            # Sequence i's target t (predicting its token t+1) sits at row position start + t;
            # targets past its end point at the row's last target position (masked out anyway).
            gather_rows[i] = r
            gather_cols[i] = (start + torch.arange(targets)).clamp(max=length - 2)
            start += n
    same = (segment[:, :, None] == segment[:, None, :]) & (segment[:, :, None] >= 0)
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    pad_self = (segment < 0)[:, :, None] & torch.eye(length, dtype=torch.bool)
    attention = ((same & causal) | pad_self)[:, None]
    return replace(per_seq, input_ids=input_ids, attention_mask=attention, position_ids=positions,
                   gather=(gather_rows, gather_cols))
