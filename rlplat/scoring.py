"""RewardScorer: the reward pool as a Ray actor beside the learners.

The actor owns a ``rewards.RewardPool`` of killable worker processes: a verifier that hangs costs
its sample a timeout (score 0, ``timed_out``), never the run. The driver reaches it with a
deadline like every other actor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ray

from rlplat.config.schema import RewardConfig
from rlplat.distributed.actors import wait_all
from rlplat.types import PromptItem, Sample, ScoredGroup, ScoredSample


def reward_spec(cfg: RewardConfig) -> dict[str, Any]:
    """The plain mapping ``rewards.build_reward`` takes (picklable into pool workers)."""
    return {"components": dict(cfg.components), "accuracy": cfg.accuracy,
            "modules": list(cfg.modules), "options": dict(cfg.options)}


@dataclass(frozen=True)
class ScoreRequest:
    """One sample to score, flattened to what a verifier sees."""

    prompt: str
    completion: str
    reference: Any
    metadata: dict[str, Any]


class RewardScorer:
    """Ray actor wrapping ``rewards.RewardPool``."""

    def __init__(self, cfg: RewardConfig) -> None:
        from rewards import RewardPool

        self.pool = RewardPool(reward_spec(cfg), num_workers=cfg.num_workers, timeout_s=cfg.timeout_s)

    def score(self, requests: list[ScoreRequest]) -> tuple[list[Any], dict[str, float]]:
        """Outputs in request order, and the pool's counters since the last call."""
        from rewards import RewardInput

        inputs = [RewardInput(prompt=r.prompt, completion=r.completion, reference=r.reference,
                              metadata=r.metadata) for r in requests]
        outs = self.pool.score_batch(inputs)
        return outs, self.pool.stats_and_reset()

    def close(self) -> None:
        """Stop the pool's processes."""
        self.pool.close()


class Scorer:
    """Driver-side handle: turns generated groups into ``ScoredGroup``s within a deadline."""

    def __init__(self, cfg: RewardConfig) -> None:
        self.actor = ray.remote(RewardScorer).options(num_cpus=0, max_restarts=1).remote(cfg)

    def score(self, prompts: list[PromptItem], groups: list[list[Sample]],
              timeout_s: float) -> tuple[list[ScoredGroup], dict[str, float]]:
        """Score every sample of every group; returns the scored groups and pool counters."""
        requests = [ScoreRequest(p.question, s.text, p.reference, {**p.metadata, "system": p.system})
                    for p, g in zip(prompts, groups) for s in g]
        outs, stats = wait_all([self.actor.score.remote(requests)], ["reward scorer"], "reward",
                               timeout_s)[0]
        it = iter(outs)
        scored = [ScoredGroup(p, tuple(_scored(s, next(it)) for s in g)) for p, g in zip(prompts, groups)]
        return scored, stats

    def close(self) -> None:
        """Stop the actor's pool and the actor."""
        try:
            ray.get(self.actor.close.remote(), timeout=30)
        finally:
            ray.kill(self.actor)


def _scored(sample: Sample, out: Any) -> ScoredSample:
    details = {k: float(v) for k, v in (out.details or {}).items() if isinstance(v, (int, float))
               and not isinstance(v, bool)}
    return ScoredSample(sample, float(out.score), bool(out.correct), bool(out.timed_out), details)
