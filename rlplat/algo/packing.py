"""Sequence packing for supervised steps: several examples per row, attention kept within each.

Padding is compute spent on nothing (a quarter of the positions in the GRPO step measured in
docs/benchmarks.md). A packed row concatenates examples up to ``row_tokens`` tokens; each example's
positions restart at 0, and a block-diagonal causal mask lets a token see only earlier tokens of its
own example, so the packed row computes exactly what the examples would compute one by one (the
test checks the loss and gradients against the unpacked batch). Padding at a row's end attends to
itself only (a row with nothing to attend to would give NaN in softmax).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rlplat.algo.batching import MicroBatch
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


def collate_packed(rows: Sequence[Sequence[TrainSequence]], pad_id: int) -> MicroBatch:
    """Packed rows as a ``MicroBatch``: ``attention_mask`` is ``[R, 1, L, L]`` (bool, True where a
    query may attend a key), ``position_ids`` restart per example, the loss mask covers each
    example's completion tokens, and ``old_logprobs``/``advantages`` are zeros (unused by SFT)."""
    length = max(sum(len(s.prompt_ids) + len(s.completion_ids) for s in row) for row in rows)
    r = len(rows)
    input_ids = torch.full((r, length), pad_id, dtype=torch.long)
    positions = torch.zeros((r, length), dtype=torch.long)
    segment = torch.full((r, length), -1, dtype=torch.long)
    loss_mask = torch.zeros((r, length - 1), dtype=torch.bool)
    for i, row in enumerate(rows):
        start = 0
        for k, s in enumerate(row):
            p, c = len(s.prompt_ids), len(s.completion_ids)
            if p == 0:
                raise ValueError("every train sequence needs at least one prompt token (e.g. BOS)")
            input_ids[i, start:start + p + c] = torch.tensor(s.prompt_ids + s.completion_ids, dtype=torch.long)
            positions[i, start:start + p + c] = torch.arange(p + c)
            segment[i, start:start + p + c] = k
            # Target position t predicts token t+1: completion tokens are targets p-1 .. p+c-2.
            loss_mask[i, start + p - 1:start + p + c - 1] = True
            start += p + c
    same = (segment[:, :, None] == segment[:, None, :]) & (segment[:, :, None] >= 0)
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    pad_self = (segment < 0)[:, :, None] & torch.eye(length, dtype=torch.bool)
    attention = ((same & causal) | pad_self)[:, None]
    zeros = torch.zeros((r, length - 1), dtype=torch.float32)
    return MicroBatch(input_ids, attention, loss_mask, zeros, torch.zeros(r), position_ids=positions)


def packed_micro_batches(seqs: Sequence[TrainSequence], row_tokens: int, rows_per_batch: int,
                         pad_id: int) -> list[MicroBatch]:
    """``seqs`` packed into rows of at most ``row_tokens`` tokens, ``rows_per_batch`` rows a batch."""
    rows = [[seqs[i] for i in row] for row in
            pack_rows([len(s.prompt_ids) + len(s.completion_ids) for s in seqs], row_tokens)]
    return [collate_packed(rows[k:k + rows_per_batch], pad_id) for k in range(0, len(rows), rows_per_batch)]
