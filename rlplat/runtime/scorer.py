"""RewardScorer: the reward pool as a Ray actor beside the learners.

The actor owns a ``rewards.RewardPool`` of killable worker processes: a verifier that hangs costs
its sample a timeout (score 0, ``timed_out``), never the run. Model outputs are untrusted: they are
scored only in those worker processes (and code only inside the sandbox they start), never in the
driver. The driver reaches the actor with a deadline like every other actor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ray

from rewards import RewardInput, RewardOutput
from rlplat.config.schema import RewardConfig
from rlplat.distributed.waits import wait_all
from rlplat.types import GenerationRequest, PromptItem, Sample, ScoredGroup, ScoredSample


def reward_spec(cfg: RewardConfig) -> dict[str, Any]:
    """The plain mapping ``rewards.build_reward`` takes (picklable into pool workers)."""
    return {"components": dict(cfg.components), "accuracy": cfg.accuracy,
            "modules": list(cfg.modules), "options": {k: dict(v) for k, v in cfg.options.items()}}


class RewardScorer:
    """Ray actor wrapping ``rewards.RewardPool``."""

    def __init__(self, cfg: RewardConfig) -> None:
        from rewards import RewardPool

        self.pool = RewardPool(reward_spec(cfg), num_workers=cfg.num_workers, timeout_s=cfg.timeout_s)

    def score(self, inputs: list[RewardInput]) -> list[RewardOutput]:
        """Outputs in input order."""
        return self.pool.score_batch(inputs)

    def stats(self) -> dict[str, float]:
        """The pool's counters (``reward/...``) since the last call."""
        return self.pool.stats_and_reset()

    def close(self) -> None:
        """Stop the pool's processes."""
        self.pool.close()


class Scorer:
    """Driver-side handle: turns generated groups into ``ScoredGroup``s within a deadline."""

    def __init__(self, cfg: RewardConfig) -> None:
        self.actor = ray.remote(RewardScorer).options(num_cpus=0, max_restarts=1).remote(cfg)

    def score(self, prompts: Sequence[PromptItem], requests: Sequence[GenerationRequest],
              groups: Sequence[Sequence[Sample]], timeout_s: float) -> list[ScoredGroup]:
        """Score every sample of every group (``prompts[i]`` was sent as ``requests[i]`` and produced
        ``groups[i]``)."""
        inputs = [RewardInput(prompt=p.question, completion=s.text, reference=p.reference,
                              metadata={**p.metadata, "system": p.system})
                  for p, g in zip(prompts, groups) for s in g]
        outs = wait_all([self.actor.score.remote(inputs)], ["reward scorer"], "reward", timeout_s)[0]
        it = iter(outs)
        return [ScoredGroup(p, r.prompt_token_ids, tuple(_scored(s, next(it)) for s in g))
                for p, r, g in zip(prompts, requests, groups)]

    def stats(self, timeout_s: float) -> dict[str, float]:
        """The pool's counters since the last call: every sample scored in between, whichever call
        scored it (a step's refill rounds included)."""
        stats: dict[str, float] = wait_all([self.actor.stats.remote()], ["reward scorer"], "reward", timeout_s)[0]
        return stats

    def close(self) -> None:
        """Stop the actor's pool and the actor."""
        try:
            ray.get(self.actor.close.remote(), timeout=30)
        finally:
            ray.kill(self.actor)


def _scored(sample: Sample, out: RewardOutput) -> ScoredSample:
    details = {k: float(v) for k, v in (out.details or {}).items() if isinstance(v, (int, float))
               and not isinstance(v, bool)}
    return ScoredSample(sample, float(out.score), bool(out.correct), bool(out.timed_out), details)
