"""``ProgressiveCurriculum``: progressive batching by pass rate (paper, LN §5.1 and Fig. 6).

Per step, as in the paper:
1. Difficulty is the pass rate, in ``num_buckets`` buckets (k/8 from an 8-sample prefilter).
2. The target is a Gaussian over pass rate whose centre moves from easy (high pass rate) to hard.
3. Slots follow the target, limited by what each bucket still holds in the current epoch.
4. Slots left over go to the buckets with the largest remaining pools.
5. The batch is shuffled.

Where this departs from (or fills in for) the paper:
* Centre schedule, width and range are ours (see ``ProgressiveOptions``): by default the centre
  runs over the pass rates the data holds when training starts (``buckets.resolve_center_range``),
  and the target is renormalised over non-empty buckets (``buckets.target_distribution``).
* Pass rates are updated from training: a prompt is bucketed by its latest group's pass rate
  (the policy's), or by the offline prefilter rate until the policy has seen it. The paper ranks
  by the fixed pre-computed rate.
* Prompts without any evidence are placed at ``unknown_prior``.
* "What each bucket still holds" is read as sampling without replacement within an epoch: when
  every bucket is exhausted, a new epoch refills them with all active (non-retired) prompts.
  The centre moves over ``total_steps`` (default) or, with ``schedule_over="epoch"``, over each
  epoch; the second suits runs of many epochs (see ``ProgressiveOptions.schedule_over``).
* Solved prompts retire (``retire_threshold``); the paper has no such rule.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from curricula.buckets import (
    allocate,
    bucket_centres,
    bucket_of,
    interpolate_center,
    resolve_center_range,
    target_distribution,
)
from curricula.drift import DriftModel
from curricula.options import ProgressiveOptions
from curricula.outcome import GroupOutcome
from curricula.store import PassRateStore
from curricula.tracking import (
    PromptTracker,
    check_batch_size,
    check_state_keys,
    difficulty_metrics,
    rng_state,
    set_rng_state,
    warn_option_changes,
)

IntArray = npt.NDArray[np.int64]
_STATE_KEYS = {
    "kind", "step", "epoch", "epoch_size", "center", "center_range", "pool", "rng", "tracker", "options", "draw_rates",
}


class ProgressiveCurriculum:
    """Batches drawn from a Gaussian over pass rate whose centre moves from easy to hard.

    Args:
        uids: The dataset's prompt ids (unique); ``next_batch`` returns indices into it.
        seed: Seed of the sampler's own RNG; same seed, same calls -> same batches.
        total_steps: Steps over which the centre moves from ``center_start`` to ``center_end``.
        store: Pass-rate store, typically ``PassRateStore.from_table(prefilter_table)``; a fresh
            one if None (then every prompt starts at ``unknown_prior``).
        options: ``ProgressiveOptions``; defaults if None.
    """

    kind = "progressive"
    OPTIONS: ClassVar[type[ProgressiveOptions]] = ProgressiveOptions  # ``curriculum.options`` is parsed into this

    def __init__(self, uids: Sequence[str], *, seed: int = 0, total_steps: int,
                 store: PassRateStore | None = None, options: ProgressiveOptions | None = None) -> None:
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"progressive curriculum needs total_steps >= 1 (schedule length), got {total_steps!r}")
        self.options = options or ProgressiveOptions()
        self.total_steps = total_steps
        drift = DriftModel(len(uids), self.options.drift_step) if self.options.drift else None
        self._tracker = PromptTracker(uids, store, self.options.retire_rule(), drift)
        self._centres = bucket_centres(self.options.num_buckets)
        self._start, self._end = resolve_center_range(
            self._tracker.rates, self.options.num_buckets, self.options.center_start, self.options.center_end)
        self._rng = np.random.default_rng(seed)
        self._step = 0
        self._epoch = 0
        self._pool = np.zeros(len(self._tracker), dtype=bool)  # prompts not yet drawn this epoch
        self._epoch_size = 0
        self._center = self._next_center()
        self._draw_rates: list[float] = []

    @property
    def store(self) -> PassRateStore:
        """The pass-rate store this curriculum reads and updates."""
        return self._tracker.store

    @property
    def uids(self) -> tuple[str, ...]:
        """The dataset's prompt ids."""
        return self._tracker.uids

    def _next_center(self, batch_size: int = 1) -> float:
        """Centre for the step about to be drawn (see ``ProgressiveOptions.schedule_over``).

        In ``epoch`` mode progress is the drawn share of the epoch, scaled so that the epoch's last
        full batch gets ``center_end`` (as the last step does in ``steps`` mode).
        """
        if self.options.schedule_over == "epoch":
            remaining = int((self._pool & self._tracker.active()).sum())
            drawn = self._epoch_size - remaining if remaining else 0
            progress = drawn / max(self._epoch_size - batch_size, 1)
        else:
            progress = self._step / max(self.total_steps - 1, 1)
        return interpolate_center(progress, self._start, self._end, self.options.schedule)

    def next_batch(self, batch_size: int, *, refill: bool = False) -> list[int]:
        """Indices of the next batch, shuffled; ``refill=True`` keeps the current step's centre."""
        check_batch_size(batch_size)
        if not refill:
            self._center = self._next_center(batch_size)
            self._step += 1
            self._draw_rates = []
        batch = self._draw(batch_size)
        self._draw_rates.extend(self._tracker.rates[batch].tolist())
        return batch

    def _draw(self, batch_size: int) -> list[int]:
        """Fill a batch from the epoch pool, starting new epochs as buckets run dry."""
        in_batch = np.zeros(len(self._tracker), dtype=bool)
        batch: list[int] = []
        while len(batch) < batch_size:
            active = self._tracker.active()
            self._pool &= active  # retired prompts leave at once, not at the next epoch
            if not self._pool.any():
                self._start_epoch(active)
            candidates = np.flatnonzero(self._pool & ~in_batch)
            if candidates.size == 0:  # fewer active prompts than the batch: some must repeat
                candidates = np.flatnonzero(self._pool)
            picked = self._pick(candidates, batch_size - len(batch))
            self._pool[picked] = False
            in_batch[picked] = True
            batch.extend(picked.tolist())
        return [int(i) for i in self._rng.permutation(batch)]

    def _start_epoch(self, active: npt.NDArray[np.bool_]) -> None:
        self._epoch += 1
        self._pool = active.copy()
        self._epoch_size = int(active.sum())
        if self._epoch == 2 and self.options.schedule_over == "steps" and self._step < self.total_steps - 1:
            warnings.warn(
                f"progressive curriculum: epoch 2 starts at batch {self._step} of {self.total_steps} with "
                "schedule_over='steps'; as the centre moves to hard prompts, each later epoch ends with the "
                "easy prompts it skipped. For runs of many epochs set schedule_over='epoch'.",
                stacklevel=4,
            )

    def _placement_rates(self, indices: IntArray) -> npt.NDArray[np.float64]:
        rates = self._tracker.rates[indices]
        return np.where(np.isnan(rates), self.options.unknown_prior, rates)

    def _pick(self, candidates: IntArray, k: int) -> IntArray:
        """Choose ``min(k, len(candidates))`` candidates: allocate slots to buckets, then sample in each."""
        buckets = bucket_of(self._placement_rates(candidates), self.options.num_buckets)
        available = np.bincount(buckets, minlength=self.options.num_buckets)
        target = target_distribution(self._centres, self._center, self.options.sigma, available > 0)
        counts = allocate(target, available, min(k, candidates.size))
        parts = [
            self._rng.choice(candidates[buckets == b], size=int(c), replace=False)
            for b, c in enumerate(counts) if c
        ]
        return np.concatenate(parts).astype(np.int64)

    def target_mean(self) -> float:
        """Mean pass rate of the current target over the buckets holding active prompts."""
        active = np.flatnonzero(self._tracker.active())
        available = np.bincount(bucket_of(self._placement_rates(active), self.options.num_buckets),
                                minlength=self.options.num_buckets)
        target = target_distribution(self._centres, self._center, self.options.sigma, available > 0)
        return float(target @ self._centres)

    def observe(self, outcomes: Sequence[GroupOutcome]) -> None:
        """Record scored groups: their prompts move to the bucket of their new pass rate."""
        self._tracker.observe(outcomes)

    def metrics(self) -> dict[str, float]:
        """Target centre and mean, the latest step's difficulty, epoch progress and retired count."""
        out = difficulty_metrics(np.asarray(self._draw_rates, dtype=np.float64), self.options.num_buckets)
        out["curriculum/target_center"] = float(self._center)
        out["curriculum/target_mean_pass_rate"] = self.target_mean()
        out["curriculum/epoch"] = float(self._epoch)
        out["curriculum/epoch_remaining"] = float(self._pool.sum())
        out["curriculum/retired"] = float(self._tracker.retired.sum())
        if self._tracker.drift is not None:
            out["curriculum/drift_logit"] = self._tracker.drift.theta
        return out

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: step, centre, epoch pool, RNG, store and retired set."""
        return {
            "kind": self.kind,
            "step": self._step,
            "epoch": self._epoch,
            "epoch_size": self._epoch_size,
            "center": self._center,
            "center_range": [self._start, self._end],
            "pool": np.flatnonzero(self._pool).tolist(),
            "rng": rng_state(self._rng),
            "tracker": self._tracker.state_dict(),
            "options": asdict(self.options) | {"total_steps": self.total_steps},
            "draw_rates": [None if np.isnan(r) else r for r in self._draw_rates],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()`` output; raises ValueError on a foreign or malformed state."""
        check_state_keys(state, _STATE_KEYS, self.kind)
        self._tracker.load_state_dict(state["tracker"])
        warn_option_changes(state["options"], asdict(self.options) | {"total_steps": self.total_steps}, self.kind)
        self._step = int(state["step"])
        self._epoch = int(state["epoch"])
        self._epoch_size = int(state["epoch_size"])
        self._center = float(state["center"])
        self._start, self._end = (float(c) for c in state["center_range"])
        self._pool = np.zeros(len(self._tracker), dtype=bool)
        self._pool[np.asarray(state["pool"], dtype=np.int64)] = True
        set_rng_state(self._rng, state["rng"])
        self._draw_rates = [np.nan if r is None else float(r) for r in state["draw_rates"]]
