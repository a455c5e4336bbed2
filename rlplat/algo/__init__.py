"""Pure tensor algorithms for GRPO: advantages, log-probabilities, KL, losses, bookkeeping.

No Ray, vLLM or DeepSpeed imports: everything here runs (and is unit-tested) on CPU.
"""

from rlplat.algo.advantages import (
    AdvantageMode,
    advantage_modes,
    group_advantages,
    group_advantages_ragged,
    register_advantage,
)
from rlplat.algo.batching import num_optimizer_steps
from rlplat.algo.losses import (
    LOG_RATIO_CLAMP,
    AggregationMode,
    PolicyLossStats,
    aggregate,
    clipped_policy_loss,
    entropy_from_logits,
    grpo_loss,
    kl_k3,
    masked_mean,
    token_logprobs,
)

__all__ = [
    "LOG_RATIO_CLAMP",
    "AdvantageMode",
    "AggregationMode",
    "PolicyLossStats",
    "advantage_modes",
    "aggregate",
    "clipped_policy_loss",
    "entropy_from_logits",
    "group_advantages",
    "group_advantages_ragged",
    "grpo_loss",
    "kl_k3",
    "masked_mean",
    "num_optimizer_steps",
    "register_advantage",
    "token_logprobs",
]
