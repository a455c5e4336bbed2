"""Held-out evaluation during GRPO: the policy's pass rate on prompts it never trains on.

Every ``grpo.eval_every`` steps and at the last step, after the weight sync, the rollout engines
sample ``grpo.eval_samples`` completions for each held-out prompt (``prompts.split_held_out``) with
the training sampling parameters, and the reward pool scores them. The sampling seeds are the same
at every evaluation, so successive evaluations differ only by the weights (common random numbers:
the step-to-step noise of the curve is much smaller than that of the training ``pass_rate``).
The reward pool counts an evaluation in a tally of its own, which it drops: a step's ``reward/*``
counters describe its training samples only, including those the asynchronous lookahead scored
while the evaluation ran.
"""

from __future__ import annotations

import statistics
import time

from rlplat.config.schema import Config
from rlplat.runtime.prompts import PromptSet
from rlplat.runtime.protocols import Rollouts, Scoring

# Seeds of the evaluation requests: a step no training step uses, the same at every evaluation.
_EVAL_STEP = -1
# The reward pool's tally of evaluations (``rewards.RewardPool.score_batch``).
EVAL_TALLY = "eval"


class HeldOutEval:
    """Pass rate on the held-out prompts, every ``grpo.eval_every`` steps and at the last step."""

    def __init__(self, cfg: Config, prompts: PromptSet) -> None:
        self.cfg = cfg
        self.items, self.requests = prompts.requests(range(len(prompts)), cfg.seed, _EVAL_STEP, 0)

    def due(self, step: int) -> bool:
        """Whether ``step`` ends with an evaluation."""
        g = self.cfg.grpo
        return bool(self.items) and g.eval_every > 0 and (step % g.eval_every == 0 or step == g.total_steps)

    def run(self, rollouts: Rollouts, scorer: Scoring) -> dict[str, float]:
        """``eval/pass_rate``, ``eval/reward/mean`` and ``time/eval_s`` of the engines' current weights."""
        cfg, t0 = self.cfg, time.perf_counter()
        samples = rollouts.generate(self.requests, cfg.grpo.eval_samples, cfg.rollout.sampling).samples
        kept = [i for i, s in enumerate(samples) if s is not None]  # a prompt dropped for crashing engines
        scored = scorer.score([self.items[i] for i in kept], [self.requests[i] for i in kept],
                              [s for s in samples if s is not None], tally=EVAL_TALLY)
        scorer.stats_and_reset(EVAL_TALLY)
        flat = [s for g in scored for s in g.samples]
        return {"eval/pass_rate": sum(s.correct for s in flat) / len(flat),
                "eval/reward/mean": statistics.fmean(s.reward for s in flat),
                "time/eval_s": time.perf_counter() - t0}
