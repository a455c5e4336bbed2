"""Pure tensor algorithms for GRPO: advantages, log-probabilities, KL, losses, batching, statistics.

No Ray, vLLM or DeepSpeed imports: everything here runs (and is unit-tested) on CPU.
"""

from rlplat.algo.advantages import (
    ADVANTAGES,
    AdvantageMode,
    advantage_modes,
    group_advantages,
    group_advantages_ragged,
    register_advantage,
    resolve_estimator,
)
from rlplat.algo.batching import num_optimizer_steps
from rlplat.algo.logprobs import DEFAULT_CHUNK_ELEMENTS, default_chunk_tokens, entropy_from_logits, token_logprobs
from rlplat.algo.losses import (
    LOG_RATIO_CLAMP,
    AggregationMode,
    PolicyLossStats,
    aggregate,
    clipped_policy_loss,
    grpo_loss,
    kl_k3,
    masked_mean,
)

__all__ = [
    "ADVANTAGES",
    "DEFAULT_CHUNK_ELEMENTS",
    "LOG_RATIO_CLAMP",
    "AdvantageMode",
    "AggregationMode",
    "PolicyLossStats",
    "advantage_modes",
    "aggregate",
    "clipped_policy_loss",
    "default_chunk_tokens",
    "entropy_from_logits",
    "group_advantages",
    "group_advantages_ragged",
    "grpo_loss",
    "kl_k3",
    "masked_mean",
    "num_optimizer_steps",
    "register_advantage",
    "resolve_estimator",
    "token_logprobs",
]
