"""Unit tests for rlplat.algo.batching: collation, micro-batches, rank split, optimizer steps (CPU)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from rlplat.algo.batching import MicroBatch, collate, num_optimizer_steps, split_for_ranks
from rlplat.algo.microbatches import MicroBatching, micro_batches
from rlplat.types import TrainSequence

PAD = 0


def _seq(prompt_len: int, completion_len: int, uid: int, sft: bool = False) -> TrainSequence:
    """A sequence whose tokens say where they come from: prompt ids 1000*uid + i, completion 1000*uid + 500 + i.

    Token ids never equal ``PAD`` and are unique across sequences, so a test can tell prompt,
    completion and padding positions apart, and which sequence a row holds.
    """
    base = 1000 * (uid + 1)
    prompt = tuple(base + i for i in range(prompt_len))
    completion = tuple(base + 500 + i for i in range(completion_len))
    logprobs = () if sft else tuple(-0.01 * (uid + 1) - 0.1 * i for i in range(completion_len))
    return TrainSequence(prompt, completion, logprobs, advantage=0.25 * uid - 1.0)


def _random_seqs(n: int, seed: int) -> list[TrainSequence]:
    rng = random.Random(seed)
    return [_seq(rng.randint(1, 9), rng.randint(0, 12), uid) for uid in range(n)]


def _is_completion(token: int) -> bool:
    return token != PAD and token % 1000 >= 500


def _decode(mb: MicroBatch) -> list[TrainSequence]:
    """Rebuild the sequences a micro-batch holds from its tensors alone."""
    out = []
    for row in range(mb.input_ids.shape[0]):
        n = int(mb.attention_mask[row].sum())
        ids = mb.input_ids[row, :n].tolist()
        completion = mb.input_ids[row, 1:][mb.loss_mask[row]].tolist()
        prompt = ids[: n - len(completion)]
        logprobs = mb.old_logprobs[row][mb.loss_mask[row]].tolist()
        out.append(TrainSequence(tuple(prompt), tuple(completion), tuple(logprobs), float(mb.advantages[row])))
    return out


def _same(a: TrainSequence, b: TrainSequence) -> bool:
    """Equal ids and advantage; logprobs equal up to their fp32 rounding in the micro-batch."""
    return (
        a.prompt_ids == b.prompt_ids
        and a.completion_ids == b.completion_ids
        and a.advantage == pytest.approx(b.advantage)
        and list(a.old_logprobs) == pytest.approx(list(b.old_logprobs), abs=1e-6)
    )


# ---------------------------------------------------------------------------------------------
# collate
# ---------------------------------------------------------------------------------------------


def test_collate_hand_example() -> None:
    # prompt (5, 6, 7), completion (8, 9): targets input_ids[1:] = 6 7 8 9 -> mask at positions 2, 3.
    seqs = [
        TrainSequence((5, 6, 7), (8, 9), (-0.5, -0.25), 1.5),
        TrainSequence((3,), (4,), (-2.0,), -1.0),
    ]
    mb = collate(seqs, pad_id=PAD)
    assert mb.input_ids.tolist() == [[5, 6, 7, 8, 9], [3, 4, PAD, PAD, PAD]]
    assert mb.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert mb.loss_mask.tolist() == [[False, False, True, True], [True, False, False, False]]
    assert mb.old_logprobs[mb.loss_mask].tolist() == [-0.5, -0.25, -2.0]
    assert mb.advantages.tolist() == [1.5, -1.0]
    assert mb.loss_mask.dtype == torch.bool
    assert mb.input_ids.dtype == torch.long and mb.old_logprobs.dtype == torch.float32


def test_collate_loss_mask_selects_exactly_the_completion_targets() -> None:
    seqs = _random_seqs(12, seed=0) + [_seq(4, 0, 50), _seq(1, 7, 51)]  # empty completion, 1-token prompt
    mb = collate(seqs, pad_id=PAD)
    length = max(len(s.prompt_ids) + len(s.completion_ids) for s in seqs)
    assert mb.input_ids.shape == (len(seqs), length)
    assert mb.loss_mask.shape == mb.old_logprobs.shape == (len(seqs), length - 1)
    targets = mb.input_ids[:, 1:]
    for row, s in enumerate(seqs):
        n = len(s.prompt_ids) + len(s.completion_ids)
        # Loss positions are exactly those whose next-token target is a completion token.
        expected = [_is_completion(int(tok)) for tok in targets[row]]
        assert mb.loss_mask[row].tolist() == expected, f"row {row}"
        assert int(mb.loss_mask[row].sum()) == len(s.completion_ids)
        # The rollout's logprobs sit at those positions, in order.
        torch.testing.assert_close(mb.old_logprobs[row][mb.loss_mask[row]], torch.tensor(s.old_logprobs).float())
        # The row holds the sequence, then padding that attention and the loss both ignore.
        assert mb.input_ids[row, :n].tolist() == list(s.prompt_ids + s.completion_ids)
        assert (mb.input_ids[row, n:] == PAD).all()
        assert mb.attention_mask[row].tolist() == [1] * n + [0] * (length - n)
        assert not mb.loss_mask[row, n - 1 :].any()


def test_collate_sft_sequences_without_logprobs() -> None:
    seqs = [_seq(3, 4, 0, sft=True), _seq(2, 2, 1, sft=True)]
    mb = collate(seqs, pad_id=PAD)
    assert mb.loss_mask.sum(-1).tolist() == [4, 2]
    assert (mb.old_logprobs == 0).all()


def test_collate_pads_with_the_given_id() -> None:
    mb = collate([_seq(2, 1, 0), _seq(4, 3, 1)], pad_id=-7)
    assert mb.input_ids[0, 3:].tolist() == [-7] * 4


def test_micro_batch_to_keeps_fields() -> None:
    mb = collate(_random_seqs(3, seed=1), pad_id=PAD)
    moved = mb.to(torch.device("cpu"))
    for name in ("input_ids", "attention_mask", "loss_mask", "old_logprobs", "advantages"):
        assert torch.equal(getattr(moved, name), getattr(mb, name)), name


# ---------------------------------------------------------------------------------------------
# micro_batches
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "size"), [(10, 3), (12, 4), (5, 8), (1, 1)])
def test_micro_batches_sizes_order_and_coverage(n: int, size: int) -> None:
    seqs = _random_seqs(n, seed=n)
    mbs = micro_batches(seqs, MicroBatching(size), PAD)
    assert [mb.input_ids.shape[0] for mb in mbs] == [size] * (n // size) + ([n % size] if n % size else [])
    lengths = [int(x) for mb in mbs for x in mb.attention_mask.sum(-1)]
    assert lengths == sorted(lengths), "micro-batches are not length-sorted"
    for mb in mbs:  # each pads only to its own longest sequence
        assert mb.input_ids.shape[1] == int(mb.attention_mask.sum(-1).max())
    decoded = [s for mb in mbs for s in _decode(mb)]
    assert len(decoded) == n
    remaining = list(seqs)
    for d in decoded:  # every sequence exactly once, with its logprobs and advantage
        match = next(i for i, s in enumerate(remaining) if _same(d, s))
        remaining.pop(match)
    assert not remaining


# ---------------------------------------------------------------------------------------------
# split_for_ranks
# ---------------------------------------------------------------------------------------------


def _total_len(s: TrainSequence) -> int:
    return len(s.prompt_ids) + len(s.completion_ids)


@pytest.mark.parametrize(("n", "world"), [(16, 4), (12, 3), (8, 1), (6, 6)])
def test_split_for_ranks_covers_each_sequence_once_with_global_normalisers(n: int, world: int) -> None:
    seqs = _random_seqs(n, seed=100 + n)
    shards = split_for_ranks(seqs, world)
    assert len(shards) == world
    assert all(len(sh.sequences) == n // world for sh in shards)
    dealt = Counter(id(s) for sh in shards for s in sh.sequences)
    assert dealt == Counter(id(s) for s in seqs)
    num_tokens = sum(len(s.completion_ids) for s in seqs)
    assert all(sh.num_tokens == num_tokens and sh.num_seqs == n for sh in shards)


@pytest.mark.parametrize("seed", range(5))
def test_split_for_ranks_balances_tokens(seed: int) -> None:
    seqs = _random_seqs(24, seed=seed)
    shards = split_for_ranks(seqs, 4)
    loads = [sum(_total_len(s) for s in sh.sequences) for sh in shards]
    lengths = [_total_len(s) for s in seqs]
    # Longest-first round-robin: ranks differ by at most the spread of sequence lengths.
    assert max(loads) - min(loads) <= max(lengths) - min(lengths)


def test_split_for_ranks_balances_sorted_and_interleaved_inputs() -> None:
    # A contiguous split of the first list, or a round-robin in input order of the second, would
    # give one rank all the long sequences.
    for lengths in ([1, 1, 1, 1, 10, 10, 10, 10], [10, 1, 10, 1, 10, 1, 10, 1]):
        seqs = [_seq(1, c, uid) for uid, c in enumerate(lengths)]
        loads = [sum(len(s.completion_ids) for s in sh.sequences) for sh in split_for_ranks(seqs, 2)]
        assert loads == [22, 22]


def test_split_for_ranks_without_completion_tokens_keeps_a_positive_normaliser() -> None:
    shards = split_for_ranks([_seq(3, 0, 0), _seq(2, 0, 1)], 2)
    assert [sh.num_tokens for sh in shards] == [1, 1]  # never a division by zero in the loss


def test_split_for_ranks_rejects_uneven_split() -> None:
    with pytest.raises(ValueError, match="do not split evenly"):
        split_for_ranks(_random_seqs(10, seed=2), 4)


# ---------------------------------------------------------------------------------------------
# num_optimizer_steps
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompts", "samples", "global_batch", "steps"),
    [(72, 16, 576, 2), (72, 16, 1152, 1), (72, 16, 144, 8), (3, 4, 6, 2), (1, 1, 1, 1)],
)
def test_num_optimizer_steps(prompts: int, samples: int, global_batch: int, steps: int) -> None:
    assert num_optimizer_steps(prompts, samples, global_batch) == steps


def test_num_optimizer_steps_rejects_partial_steps_and_bad_arguments() -> None:
    with pytest.raises(ValueError, match="not a multiple"):
        num_optimizer_steps(72, 16, 500)
    with pytest.raises(ValueError, match="not a multiple"):
        num_optimizer_steps(3, 4, 24)  # fewer samples than one step
    for args, name in (((0, 16, 576), "prompts"), ((72, -1, 576), "samples_per_prompt"), ((72, 16, 0), "global_batch")):
        with pytest.raises(ValueError, match=f"{name} must be a positive"):
            num_optimizer_steps(*args)
