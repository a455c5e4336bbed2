"""Fresh pass rates for prompts the policy has not seen for a while (``drift=True``).

A prompt's stored pass rate is the policy's rate *when it was measured*: the prefilter's before
training, or the last group drawn for it. As the policy improves, the rates of prompts not drawn
since go stale: the curriculum keeps seeing them as hard and the centre it aims at no longer
means what it did (docs/benchmarks.md measured the built-in task's rates stale within ~6 steps).

The drift model is one number, ``theta``: how far, in logits, the policy has moved since training
started. A prompt measured when the drift was ``stamp`` is estimated now at

    sigmoid(logit(rate) + theta - stamp)

(a one-parameter item-response model: every prompt keeps its difficulty, the policy's ability
moves). ``theta`` is learnt from the prompts that come back: each step, the residual between a
returning prompt's new smoothed logit and its prediction moves ``theta`` by ``step_size`` times the
mean residual. A prompt just measured keeps its raw rate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def smoothed_logit(successes: float, attempts: float) -> float:
    """``log((s + 1/2) / (n - s + 1/2))``: finite at 0 and at n successes."""
    return float(np.log((successes + 0.5) / (attempts - successes + 0.5)))


class DriftModel:
    """The policy's drift and each prompt's last measurement (``NaN`` logit: never measured).

    Args:
        n: Number of prompts (indices ``0 .. n-1``).
        step_size: Share of a step's mean residual that ``theta`` takes (1: jump to it).
    """

    def __init__(self, n: int, step_size: float = 0.5) -> None:
        if not 0.0 < step_size <= 1.0:
            raise ValueError(f"drift step_size must be in (0, 1], got {step_size}")
        self.step_size = step_size
        self.theta = 0.0
        self.logit = np.full(n, np.nan)
        self.stamp = np.zeros(n)

    def measure(self, i: int, successes: int, attempts: int) -> None:
        """Record a measurement of prompt ``i`` taken now (offline evidence before training)."""
        self.logit[i] = smoothed_logit(successes, attempts)
        self.stamp[i] = self.theta

    def observe(self, groups: Sequence[tuple[int, int, int]]) -> None:
        """A step's scored groups ``(index, successes, attempts)``: update ``theta`` from the
        prompts measured before, then record every group as the prompt's new measurement."""
        residuals = [smoothed_logit(s, n) - (self.logit[i] + self.theta - self.stamp[i])
                     for i, s, n in groups if not np.isnan(self.logit[i])]
        if residuals:
            self.theta += self.step_size * float(np.mean(residuals))
        for i, s, n in groups:
            self.measure(i, s, n)

    def adjust(self, rates: FloatArray) -> FloatArray:
        """``rates`` (the raw latest rates, NaN unknown) moved by the drift since each was measured."""
        shift = self.theta - self.stamp
        moved = 1.0 / (1.0 + np.exp(-(self.logit + shift)))
        return np.where(np.isnan(rates) | (shift == 0.0), rates, moved)

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return {"theta": self.theta, "logit": [None if np.isnan(x) else float(x) for x in self.logit],
                "stamp": self.stamp.tolist()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()`` output."""
        self.theta = float(state["theta"])
        self.logit = np.array([np.nan if x is None else x for x in state["logit"]], dtype=np.float64)
        self.stamp = np.asarray(state["stamp"], dtype=np.float64)
