"""``GroupOutcome``: what a curriculum learns from one scored group of samples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class GroupOutcome:
    """The scored samples of one prompt in one rollout (a GRPO group).

    Attributes:
        uid: The prompt's stable id (``PromptItem.uid``); the pass-rate store is keyed by it.
        rewards: One scalar reward per sample (what the advantage is computed from).
        correct: One flag per sample: did the verifier accept the answer. Pass rates count these,
            not rewards, so a format bonus never makes an unsolved prompt look solved.

    Any sequences are accepted; they are stored as tuples of float and bool, so an outcome cannot
    change after it was observed.

    Raises:
        ValueError: if the group is empty or ``rewards`` and ``correct`` differ in length.
    """

    uid: str
    rewards: Sequence[float]
    correct: Sequence[bool]

    def __post_init__(self) -> None:
        rewards = tuple(float(r) for r in self.rewards)
        correct = tuple(bool(c) for c in self.correct)
        if not rewards:
            raise ValueError(f"GroupOutcome {self.uid!r}: a group needs at least one sample")
        if len(rewards) != len(correct):
            raise ValueError(
                f"GroupOutcome {self.uid!r}: {len(rewards)} rewards but {len(correct)} correct flags; "
                "give one of each per sample"
            )
        object.__setattr__(self, "uid", str(self.uid))
        object.__setattr__(self, "rewards", rewards)
        object.__setattr__(self, "correct", correct)

    @property
    def n(self) -> int:
        """Number of samples in the group."""
        return len(self.rewards)

    @property
    def successes(self) -> int:
        """Number of samples the verifier accepted."""
        return sum(self.correct)

    @property
    def pass_rate(self) -> float:
        """Share of samples the verifier accepted."""
        return self.successes / self.n

    @property
    def reward_spread(self) -> float:
        """``max(rewards) - min(rewards)``: zero means every sample got the same reward."""
        return max(self.rewards) - min(self.rewards)


def outcomes_from_lists(uids: Sequence[str], rewards: Sequence[Sequence[float]],
                        correct: Sequence[Sequence[bool]]) -> list[GroupOutcome]:
    """Zip parallel per-group lists into ``GroupOutcome`` objects (a convenience for callers)."""
    if not len(uids) == len(rewards) == len(correct):
        raise ValueError(f"got {len(uids)} uids, {len(rewards)} reward lists, {len(correct)} correct lists")
    return [GroupOutcome(uid=u, rewards=tuple(r), correct=tuple(c)) for u, r, c in zip(uids, rewards, correct, strict=True)]
