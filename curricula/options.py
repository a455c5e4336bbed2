"""Typed, validated options of the built-in curricula (what ``curriculum.options`` in the config holds).

The config's mapping becomes one of these frozen dataclasses through ``rlbase.typed.from_mapping``
(``curricula.registry.curriculum_options``): unknown keys, wrong types and ``Literal`` choices are
rejected there, naming ``curriculum.options.<key>``; the ``__post_init__`` checks below add the ranges
(and hold for instances built directly in Python).
"""

from __future__ import annotations

from dataclasses import dataclass

from curricula.buckets import Schedule, ScheduleOver
from curricula.tracking import RetireRule


@dataclass(frozen=True)
class UniformOptions:
    """Options of ``UniformCurriculum``, the baseline (the paper's "random" arm of Fig. 6)."""

    num_buckets: int = 9
    """Pass-rate buckets of the difficulty histogram metric (9: the k/8 rates of an 8-sample prefilter)."""

    retire_threshold: float | None = None
    """Off by default, so the baseline stays plain shuffled epochs; see ``ProgressiveOptions``."""

    min_attempts_to_retire: int = 16
    """Training samples the retirement window must hold (see ``ProgressiveOptions``)."""

    def __post_init__(self) -> None:
        _check_buckets(self.num_buckets)
        self.retire_rule()  # validates the retirement fields

    def retire_rule(self) -> RetireRule | None:
        """The retirement rule these options describe, or None when off."""
        return _retire_rule(self.retire_threshold, self.min_attempts_to_retire)


@dataclass(frozen=True)
class ProgressiveOptions:
    """Options of ``ProgressiveCurriculum`` (paper, LN §5.1: "progressive batching").

    The paper gives no centre schedule, width or range; the defaults below are ours.
    """

    center_start: float | None = None
    """Centre of the target Gaussian (a pass rate) at the first step. None: the easiest pass-rate
    bucket holding a known rate when the curriculum is built (0.625 after the paper's 0.75
    prefilter); with no known rates, 1.0. See ``buckets.resolve_center_range`` for why the default
    follows the data rather than a fixed 1.0."""

    center_end: float | None = None
    """Centre at step ``total_steps - 1`` and after. None: the hardest bucket holding a known rate
    (usually 0.0); with no known rates, 0.0."""

    sigma: float = 0.15
    """Width of the Gaussian in pass-rate units. With 9 buckets spaced 0.125 apart, 0.15 gives the
    neighbouring buckets 0.71 and the next ones 0.25 of the centre bucket's weight: a batch centred
    inside the data mixes about five difficulty levels (three or four at the ends of the range), a
    "gradual rise" and never a single-bucket batch, while buckets three or more steps away get under
    5% and the batch mean tracks the centre."""

    schedule: Schedule = "linear"
    """How the centre moves: ``linear`` (constant pace; the paper suggests nothing else) or ``cosine``
    (lingers at both ends)."""

    schedule_over: ScheduleOver = "steps"
    """What the centre's progress counts. ``steps``: ``step / (total_steps - 1)``, the paper's "from
    the first batches to later batches"; right when the run is about one pass over the data or less.
    ``epoch``: the share of the current epoch already drawn, so every epoch is one easy-to-hard sweep.
    Use it for runs of many epochs: with ``steps``, a late, hard centre leaves each epoch's easy
    prompts for last, and the leftover rule must then serve them in the final batches of the epoch
    (a sawtooth in difficulty). Across epochs, pass-rate updates and retirement make the data harder."""

    num_buckets: int = 9
    """Pass-rate buckets: 9 centres 0, 1/8, ..., 1 hold the k/8 rates of the paper's 8-sample
    prefilter exactly; continuous rates measured in training go to the nearest centre."""

    unknown_prior: float = 0.5
    """Pass rate assumed for prompts without evidence (no table row, not yet observed). 0.5 is the mean
    of a uniform prior and the rate at which a GRPO group carries the most signal (variance p(1-p)), so
    unmeasured prompts are scheduled mid-curriculum; once observed they move to their measured bucket."""

    retire_threshold: float | None = 1.0
    """Retire (never sample again) a prompt whose recent training pass rate is >= this; None disables.
    On by default: a group that is all correct has zero GRPO advantage, so a prompt the policy solves
    every time only costs rollouts (dynamic sampling would drop its groups anyway). A departure from
    the paper, which uses fixed pre-computed rates; set None for a paper-faithful ablation."""

    min_attempts_to_retire: int = 16
    """Samples the retirement window must hold: 16 (one paper-sized group, or several smaller ones)
    all correct bounds the failure rate below about 3/16 (rule of three, 95%). The store keeps the
    last 16 groups per prompt, so the window fits for any group size >= 1."""

    drift: bool = False
    """Keep the rates of prompts not drawn for a while fresh (``curricula.drift``): a prompt's rate
    moves, in logits, by how far the policy has improved since it was measured, learnt from the
    prompts that come back. Off: a prompt keeps the rate of its last measurement (the paper ranks
    by the fixed prefilter rate)."""

    drift_step: float = 0.5
    """Share of a step's mean residual the drift takes (``DriftModel.step_size``)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.drift_step <= 1.0:
            raise ValueError(f"drift_step must be in (0, 1], got {self.drift_step}")
        for name in ("center_start", "center_end", "unknown_prior"):
            value = getattr(self, name)
            if value is None and name != "unknown_prior":
                continue  # None: follow the data
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"curriculum option {name} is a pass rate and must be in [0, 1], got {value}")
        if not self.sigma > 0.0:
            raise ValueError(f"curriculum option sigma must be > 0 (default 0.15), got {self.sigma}")
        if self.schedule not in ("linear", "cosine"):
            raise ValueError(f"curriculum option schedule must be 'linear' or 'cosine', got {self.schedule!r}")
        if self.schedule_over not in ("steps", "epoch"):
            raise ValueError(f"curriculum option schedule_over must be 'steps' or 'epoch', got {self.schedule_over!r}")
        _check_buckets(self.num_buckets)
        self.retire_rule()

    def retire_rule(self) -> RetireRule | None:
        """The retirement rule these options describe, or None when off."""
        return _retire_rule(self.retire_threshold, self.min_attempts_to_retire)


def _check_buckets(num_buckets: int) -> None:
    if isinstance(num_buckets, bool) or not isinstance(num_buckets, int) or num_buckets < 2:
        raise ValueError(f"curriculum option num_buckets must be an integer >= 2 (default 9), got {num_buckets!r}")


def _retire_rule(threshold: float | None, min_attempts: int) -> RetireRule | None:
    try:
        return None if threshold is None else RetireRule(float(threshold), int(min_attempts))
    except ValueError as err:
        raise ValueError(f"curriculum option {err}") from None
