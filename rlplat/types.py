"""Typed records that cross process boundaries (driver <-> Ray actors).

Everything here is a frozen dataclass of plain Python values so that it pickles cheaply through
the Ray object store and cannot be mutated behind the driver's back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PromptItem:
    """One prompt of a dataset, ready for generation.

    Attributes:
        uid: Stable identifier of the row (file + row number, or the dataset's own id). The
            curriculum's pass-rate store is keyed by it, so it must survive a resume.
        index: Position of the row in the loaded dataset.
        question: The user's question as it appears in the data (what verifiers see as prompt).
        text: The full prompt string fed to the model (chat template and system prompt applied).
        reference: The reference answer (a string for math; tests for code).
        system: The system prompt used, if any ("detailed thinking on/off" for the toggle).
        metadata: Free-form per-row metadata forwarded to the reward (for example test_format).
    """

    uid: str
    index: int
    question: str
    text: str
    reference: Any
    system: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sample:
    """One generated completion, as the rollout engine produced it.

    Attributes:
        prompt_uid: ``PromptItem.uid`` of the prompt it answers.
        prompt_token_ids: Token ids of the prompt.
        token_ids: Token ids of the completion (no padding).
        text: Decoded completion text.
        logprobs: Log-probability of each sampled token under the rollout policy, same length as
            ``token_ids``.
        weights_version: Version of the weights that generated it (see ``rlplat.sync``).
        finish_reason: "stop" or "length" as reported by the engine.
    """

    prompt_uid: str
    prompt_token_ids: tuple[int, ...]
    token_ids: tuple[int, ...]
    text: str
    logprobs: tuple[float, ...]
    weights_version: int
    finish_reason: str = "stop"


@dataclass(frozen=True)
class ScoredSample:
    """A sample with its reward.

    Attributes:
        sample: The generated sample.
        reward: Scalar reward used for the advantage.
        correct: Whether the verifier accepted the answer (feeds ``pass_rate``).
        timed_out: The verifier hit its deadline.
        details: Per-component scores (for example ``{"math": 1.0, "format": 0.0}``).
    """

    sample: Sample
    reward: float
    correct: bool
    timed_out: bool = False
    details: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoredGroup:
    """All samples drawn for one prompt, scored; the unit GRPO normalises over."""

    prompt: PromptItem
    samples: tuple[ScoredSample, ...]

    @property
    def rewards(self) -> list[float]:
        """Rewards of the samples, in order."""
        return [s.reward for s in self.samples]

    @property
    def pass_rate(self) -> float:
        """Share of samples the verifier accepted."""
        return sum(s.correct for s in self.samples) / max(len(self.samples), 1)
