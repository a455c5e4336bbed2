"""Dynamic sampling (DAPO): keep only groups whose rewards differ.

A group whose samples all got the same reward has zero group-relative advantage, so it adds no
policy gradient and only dilutes the batch. The GRPO loop drops such groups and draws more prompts
for the same step, for at most ``curriculum.dynamic_max_rounds`` extra rounds. This module is the
pure part of that loop; the items may be ``GroupOutcome`` objects or the loop's own group objects
(``outcome_of`` maps one to its ``GroupOutcome``)::

    kept, dropped = split_informative(scored, outcome_of=outcome)     # scored: the step's first batch
    seen, rounds = list(scored), 0
    while len(kept) < want and rounds < max_rounds:
        rounds += 1
        more = score(cur.next_batch(want - len(kept), refill=True))
        seen += more
        k, d = split_informative(more, outcome_of=outcome)
        kept += k
        dropped += d
    batch = fill_batch(kept, dropped, want)           # zero-advantage groups fill any shortfall
    metrics = dynamic_sampling_metrics(kept, dropped, rounds)
    cur.observe([outcome(g) for g in seen])

Dropped groups still carry pass-rate evidence (all wrong, or all right: a candidate for
retirement), so pass *every* scored group to ``Curriculum.observe``, kept or dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence, Sized
from typing import Any, TypeVar, overload

from curricula.outcome import GroupOutcome

T = TypeVar("T")

# Rewards such as 0.1 + 0.2 and 0.3 differ by ~1e-17; a std-normalised advantage would blow that
# float noise up to +-1. Spreads at or below this count as "all the same".
DEFAULT_ATOL = 1e-6


def is_informative(group: GroupOutcome, atol: float = DEFAULT_ATOL) -> bool:
    """True when the group's rewards are not all equal (spread > ``atol``)."""
    return group.reward_spread > atol


@overload
def split_informative(groups: Iterable[GroupOutcome], atol: float = DEFAULT_ATOL, *,
                      outcome_of: None = None) -> tuple[list[GroupOutcome], list[GroupOutcome]]: ...


@overload
def split_informative(groups: Iterable[T], atol: float = DEFAULT_ATOL, *,
                      outcome_of: Callable[[T], GroupOutcome]) -> tuple[list[T], list[T]]: ...


def split_informative(groups: Iterable[Any], atol: float = DEFAULT_ATOL, *,
                      outcome_of: Callable[[Any], GroupOutcome] | None = None) -> tuple[list[Any], list[Any]]:
    """Split groups into ``(kept, dropped)``, each in input order.

    ``kept`` holds the groups whose rewards differ by more than ``atol``; ``dropped`` those whose
    samples all got the same reward, including single-sample groups. The lists hold the items as
    given, so the caller's own group objects come back unchanged.

    Args:
        groups: ``GroupOutcome`` objects, or any items when ``outcome_of`` is given.
        atol: Largest reward spread that still counts as "all the same".
        outcome_of: Maps an item to its ``GroupOutcome``; None: the items are ``GroupOutcome``s.
    """
    kept: list[Any] = []
    dropped: list[Any] = []
    for group in groups:
        outcome = outcome_of(group) if outcome_of is not None else group
        if not isinstance(outcome, GroupOutcome):
            raise TypeError(f"split_informative needs GroupOutcome items (or outcome_of=...), got {outcome!r}")
        (kept if is_informative(outcome, atol) else dropped).append(group)
    return kept, dropped


def fill_batch(kept: Sequence[T], dropped: Sequence[T], want: int) -> list[T]:
    """The step's batch: the first ``want`` of ``kept + dropped``.

    When refills leave fewer than ``want`` informative groups, dropped (zero-advantage) groups fill
    the shortfall: they add no policy gradient but keep the batch size, and so the optimizer-step
    arithmetic, fixed. The result is shorter than ``want`` only if fewer groups were scored in all.

    Raises:
        ValueError: ``want`` is negative.
    """
    if want < 0:
        raise ValueError(f"fill_batch: want must be >= 0, got {want}")
    return [*kept[:want], *dropped[:max(want - len(kept), 0)]]


def dynamic_dropped_frac(kept: Sized | int, dropped: Sized | int) -> float:
    """Share of groups dynamic sampling dropped, for ``curriculum/dynamic_dropped_frac``.

    Pass the totals over every round of the step (lists of any items, or counts), i.e. over every
    group scored in the step. Returns 0.0 when no group was scored.
    """
    num_kept = kept if isinstance(kept, int) else len(kept)
    num_dropped = dropped if isinstance(dropped, int) else len(dropped)
    total = num_kept + num_dropped
    return num_dropped / total if total else 0.0


def dynamic_sampling_metrics(kept: Sized | int, dropped: Sized | int, rounds: int) -> dict[str, float]:
    """Metrics of one step's dynamic sampling.

    Args:
        kept: Informative groups over every round of the step (a list of any items, or a count).
        dropped: Dropped groups over every round (before ``fill_batch`` reuses any of them).
        rounds: Extra (refill) rounds the step took; 0 when the first batch sufficed.

    Returns:
        ``curriculum/dynamic_dropped_frac`` (dropped share of every group scored in the step) and
        ``curriculum/dynamic_extra_rounds``.
    """
    if rounds < 0:
        raise ValueError(f"dynamic_sampling_metrics: rounds must be >= 0, got {rounds}")
    return {
        "curriculum/dynamic_dropped_frac": dynamic_dropped_frac(kept, dropped),
        "curriculum/dynamic_extra_rounds": float(rounds),
    }
