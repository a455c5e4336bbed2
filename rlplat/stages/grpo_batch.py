"""Pure helpers of the GRPO step: requests, advantages, train sequences, rollout metrics."""

from __future__ import annotations

import hashlib
import random
import statistics
from collections.abc import Sequence

import torch

from curricula import GroupOutcome
from rlplat.algo import group_advantages_ragged
from rlplat.batch import TrainSequence
from rlplat.rollout.worker import GenerationRequest
from rlplat.types import PromptItem, ScoredGroup


def request_seed(seed: int, step: int, uid: str, attempt: int) -> int:
    """Sampling seed of one prompt at one step: stable across processes and resumes.

    (Python's ``hash`` is salted per process, so a digest is used instead.)
    """
    digest = hashlib.blake2b(f"{seed}|{step}|{uid}|{attempt}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def make_requests(items: Sequence[PromptItem], token_ids: Sequence[tuple[int, ...]], seed: int,
                  step: int, attempt: int) -> list[GenerationRequest]:
    """Generation requests for ``items`` (``token_ids[i]`` is the tokenised ``items[i].text``)."""
    return [GenerationRequest(it.uid, ids, request_seed(seed, step, it.uid, attempt))
            for it, ids in zip(items, token_ids)]


def advantages(groups: Sequence[ScoredGroup], mode: str) -> list[list[float]]:
    """Group-relative advantage of every sample (``rlplat.algo.group_advantages``)."""
    rewards = [torch.tensor(g.rewards, dtype=torch.float32) for g in groups]
    return [a.tolist() for a in group_advantages_ragged(rewards, mode)]  # type: ignore[arg-type]


def train_sequences(groups: Sequence[ScoredGroup], adv: Sequence[Sequence[float]]) -> list[TrainSequence]:
    """One ``TrainSequence`` per sample, in group order."""
    return [TrainSequence(s.sample.prompt_token_ids, s.sample.token_ids, s.sample.logprobs, float(a))
            for g, ga in zip(groups, adv) for s, a in zip(g.samples, ga)]


def minibatches(seqs: Sequence[TrainSequence], global_batch: int, seed: int,
                step: int) -> list[list[TrainSequence]]:
    """Shuffle (seeded by step) and cut into optimizer-step batches of ``global_batch``."""
    order = list(range(len(seqs)))
    random.Random(request_seed(seed, step, "minibatch", 0)).shuffle(order)
    return [[seqs[i] for i in order[k:k + global_batch]] for k in range(0, len(order), global_batch)]


def outcomes(groups: Sequence[ScoredGroup]) -> list[GroupOutcome]:
    """What the curriculum learns from each group."""
    return [GroupOutcome(uid=g.prompt.uid, rewards=list(g.rewards), correct=[s.correct for s in g.samples])
            for g in groups]


def rollout_metrics(groups: Sequence[ScoredGroup]) -> dict[str, float]:
    """Reward, pass-rate and length metrics of the step's samples (per-component means come from
    the reward pool's counters)."""
    samples = [s for g in groups for s in g.samples]
    rewards = [s.reward for s in samples]
    lengths = [len(s.sample.token_ids) for s in samples]
    out: dict[str, float] = {
        "reward/mean": statistics.fmean(rewards),
        "reward/std": statistics.pstdev(rewards),
        "pass_rate": sum(s.correct for s in samples) / len(samples),
        "response_length/mean": statistics.fmean(lengths),
        "response_length/max": float(max(lengths)),
        "response/truncated_frac": sum(s.sample.finish_reason == "length" for s in samples) / len(samples),
        "reward/timed_out_frac": sum(s.timed_out for s in samples) / len(samples),
        "tokens/generated": float(sum(lengths)),
    }
    return out
