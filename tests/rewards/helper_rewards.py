"""User-style rewards used by the tests (imported by name, also inside pool workers)."""

from __future__ import annotations

import asyncio
import os
import time

from rewards import Reward, RewardInput, RewardOutput, register_reward


@register_reward("t_len")
def length_reward(inp: RewardInput, scale: float = 100.0) -> float:
    return len(inp.completion) / scale


@register_reward("t_async")
async def async_reward(inp: RewardInput) -> float:
    await asyncio.sleep(0.01)
    return 1.0 if "yes" in inp.completion else 0.0


@register_reward("t_raise")
def raising_reward(inp: RewardInput) -> float:
    raise ValueError("user reward exploded")


@register_reward("t_output", correct_threshold=0.5)
def output_reward(inp: RewardInput) -> RewardOutput:
    return RewardOutput(score=0.25, correct=True, details={"note": "custom"})


@register_reward("t_nan")
def nan_reward(inp: RewardInput) -> float:
    return float("nan")


@register_reward("t_sleep")
def sleeping_reward(inp: RewardInput) -> float:
    if "hang" in inp.completion:
        time.sleep(1000)
    return 1.0


@register_reward("t_slow")
def slow_reward(inp: RewardInput) -> float:
    if "slow" in inp.completion:
        time.sleep(0.3)
    return 1.0


@register_reward("t_c_hang")
def c_hanging_reward(inp: RewardInput) -> float:
    if "hang" in inp.completion:
        # A loop inside C (builtin sum over a range): no Python signal handler can interrupt it.
        return float(sum(range(10**13)))
    return 1.0


@register_reward("t_exit")
def exiting_reward(inp: RewardInput) -> float:
    if "die" in inp.completion:
        os._exit(3)
    return 1.0


@register_reward("t_async_hang", timeout_s=0.2)
async def async_hanging_reward(inp: RewardInput) -> float:
    await asyncio.sleep(1000)
    return 1.0


class Constant(Reward):
    def _score(self, inp: RewardInput) -> RewardOutput:
        return RewardOutput(score=0.375)


CONSTANT_INSTANCE = Constant()  # a ready Reward instance, named by import path


def unregistered_reward(inp: RewardInput, bonus: float = 0.0) -> float:
    """Reachable only by import path (the `_target_` route)."""
    return 0.5 + bonus


class KeywordJudge:
    """A judge backend class named by dotted path (``backend_options`` build it)."""

    def __init__(self, keyword: str = "42") -> None:
        self.keyword = keyword

    def generate(self, prompts: list[str]) -> list[str]:
        return ["[[YES]]" if self.keyword in p.rsplit("final answer:", 1)[-1] else "[[NO]]" for p in prompts]
