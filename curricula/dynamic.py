"""Dynamic sampling (DAPO): keep only groups whose rewards differ.

A group whose samples all got the same reward has zero group-relative advantage, so it adds no
policy gradient and only dilutes the batch. The GRPO loop drops such groups and generates more
prompts to refill, for at most a configured number of extra rounds; this module is the pure filter.

Dropped groups still carry pass-rate evidence (all wrong, or all right: a candidate for
retirement), so pass *every* scored group to ``Curriculum.observe``, kept or dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from curricula.outcome import GroupOutcome

# Rewards such as 0.1 + 0.2 and 0.3 differ by ~1e-17; a std-normalised advantage would blow that
# float noise up to +-1. Spreads at or below this count as "all the same".
DEFAULT_ATOL = 1e-6


def is_informative(group: GroupOutcome, atol: float = DEFAULT_ATOL) -> bool:
    """True when the group's rewards are not all equal (spread > ``atol``)."""
    return group.reward_spread > atol


def split_informative(groups: Iterable[GroupOutcome],
                      atol: float = DEFAULT_ATOL) -> tuple[list[GroupOutcome], list[GroupOutcome]]:
    """Split groups into ``(kept, dropped)``, each in input order.

    ``kept`` holds the groups whose rewards differ by more than ``atol``; ``dropped`` those whose
    samples all got the same reward, including single-sample groups.
    """
    kept: list[GroupOutcome] = []
    dropped: list[GroupOutcome] = []
    for group in groups:
        (kept if is_informative(group, atol) else dropped).append(group)
    return kept, dropped


def dynamic_dropped_frac(kept: Sequence[GroupOutcome] | int, dropped: Sequence[GroupOutcome] | int) -> float:
    """Share of groups dynamic sampling dropped, for ``curriculum/dynamic_dropped_frac``.

    Pass the totals over every round of the step (lists or counts). Returns 0.0 when no group
    was scored.
    """
    num_kept = kept if isinstance(kept, int) else len(kept)
    num_dropped = dropped if isinstance(dropped, int) else len(dropped)
    total = num_kept + num_dropped
    return num_dropped / total if total else 0.0


def dynamic_sampling_metrics(kept: Sequence[GroupOutcome] | int, dropped: Sequence[GroupOutcome] | int,
                             rounds: int) -> dict[str, float]:
    """Metrics of one step's dynamic sampling: dropped share and the extra rounds it took."""
    return {
        "curriculum/dynamic_dropped_frac": dynamic_dropped_frac(kept, dropped),
        "curriculum/dynamic_extra_rounds": float(rounds),
    }
