"""rewards: verifiers that score rollouts, and the way users plug in their own.

Public API (docs/design.md, contract 5)::

    from rewards import RewardInput, RewardOutput, get_reward, register_reward
    out = get_reward("math").score(RewardInput(prompt=p, completion=c, reference=gold, metadata={}))
    outs = get_reward("code").score_batch([...])          # list[RewardOutput], same order

    @register_reward("my_reward")
    def my_reward(inp: RewardInput) -> float | RewardOutput: ...

For training runs: ``build_reward(config)`` makes the weighted combination of named components,
and ``RewardPool(config, num_workers, timeout_s)`` scores batches in killable worker processes.
``last_boxed(text)`` is the ``\\boxed{...}`` extractor of the ``math`` reward, for reference answers too.

Built-ins: ``math`` (math-verify), ``code`` (sandboxed tests), ``format`` (reasoning toggle),
``judge`` (LLM-as-judge). Importing this package is cheap: no sympy, math-verify, torch, vLLM or
DeepSpeed; each verifier imports what it needs when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rewards.base import Reward, RewardError, RewardInput, RewardOutput
from rewards.combine import CombinedReward, build_reward
from rewards.extract import last_boxed
from rewards.registry import get_reward, register_reward, registered_names

if TYPE_CHECKING:
    from rewards.pool import RewardPool

__all__ = [
    "CombinedReward",
    "Reward",
    "RewardError",
    "RewardInput",
    "RewardOutput",
    "RewardPool",
    "build_reward",
    "get_reward",
    "last_boxed",
    "register_reward",
    "registered_names",
]


def __getattr__(name: str) -> Any:
    # The pool pulls in multiprocessing machinery; load it only when asked for.
    if name == "RewardPool":
        from rewards.pool import RewardPool

        return RewardPool
    raise AttributeError(f"module 'rewards' has no attribute {name!r}")
