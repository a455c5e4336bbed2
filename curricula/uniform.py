"""``UniformCurriculum``: shuffled epochs, the baseline ("random" in the paper's Fig. 6)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any, ClassVar

import numpy as np

from curricula.options import UniformOptions
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

_STATE_KEYS = {"kind", "step", "epoch", "order", "rng", "tracker", "options", "draw_rates"}


class UniformCurriculum:
    """Every active prompt once per epoch, in a fresh random order each epoch.

    A batch that crosses an epoch boundary takes the old epoch's tail, then the new epoch's
    head, skipping prompts already in the batch (they stay in the new epoch for later batches);
    prompts repeat within a batch only when the batch is larger than the active dataset.
    Pass rates are still recorded (for metrics, checkpoints and an optional retirement rule).

    Args:
        uids: The dataset's prompt ids (unique); ``next_batch`` returns indices into it.
        seed: Seed of the sampler's own RNG.
        total_steps: Accepted for a uniform factory signature; unused.
        store: Pass-rate store (e.g. seeded from a prefilter table); a fresh one if None.
        options: ``UniformOptions``; defaults if None.
    """

    kind = "uniform"
    OPTIONS: ClassVar[type[UniformOptions]] = UniformOptions  # ``curriculum.options`` is parsed into this

    def __init__(self, uids: Sequence[str], *, seed: int = 0, total_steps: int | None = None,
                 store: PassRateStore | None = None, options: UniformOptions | None = None) -> None:
        self.options = options or UniformOptions()
        self._tracker = PromptTracker(uids, store, self.options.retire_rule())
        self._rng = np.random.default_rng(seed)
        self._step = 0
        self._epoch = 0
        self._order: list[int] = []
        self._draw_rates: list[float] = []

    @property
    def store(self) -> PassRateStore:
        """The pass-rate store this curriculum updates."""
        return self._tracker.store

    @property
    def uids(self) -> tuple[str, ...]:
        """The dataset's prompt ids."""
        return self._tracker.uids

    def next_batch(self, batch_size: int, *, refill: bool = False) -> list[int]:
        """The next ``batch_size`` prompts of the current epoch (see the class docstring)."""
        check_batch_size(batch_size)
        if not refill:
            self._step += 1
            self._draw_rates = []
        batch: list[int] = []
        while len(batch) < batch_size:
            active = self._tracker.active()
            self._order = [i for i in self._order if active[i]]
            if not self._order:
                self._start_epoch(active)
            taken = self._take(batch_size - len(batch), exclude=set(batch))
            batch.extend(taken or self._take(batch_size - len(batch), exclude=set()))
        self._draw_rates.extend(self._tracker.rates[batch].tolist())
        return batch

    def _start_epoch(self, active: np.ndarray) -> None:
        self._epoch += 1
        self._order = self._rng.permutation(np.flatnonzero(active)).tolist()

    def _take(self, k: int, exclude: set[int]) -> list[int]:
        """Remove and return the first ``k`` prompts of the epoch order that are not in ``exclude``."""
        taken: list[int] = []
        rest: list[int] = []
        for i in self._order:
            (taken if len(taken) < k and i not in exclude else rest).append(i)
        self._order = rest
        return taken

    def observe(self, outcomes: Sequence[GroupOutcome]) -> None:
        """Record scored groups in the store (and retire prompts if a rule is set)."""
        self._tracker.observe(outcomes)

    def metrics(self) -> dict[str, float]:
        """Difficulty of the latest step's prompts, epoch, prompts left in it and retired count."""
        out = difficulty_metrics(np.asarray(self._draw_rates, dtype=np.float64), self.options.num_buckets)
        out["curriculum/epoch"] = float(self._epoch)
        out["curriculum/epoch_remaining"] = float(len(self._order))
        out["curriculum/retired"] = float(self._tracker.retired.sum())
        return out

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: step, epoch, remaining order, RNG, store, retired set."""
        return {
            "kind": self.kind,
            "step": self._step,
            "epoch": self._epoch,
            "order": list(self._order),
            "rng": rng_state(self._rng),
            "tracker": self._tracker.state_dict(),
            "options": asdict(self.options),
            "draw_rates": [None if np.isnan(r) else r for r in self._draw_rates],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()`` output; raises ValueError on a foreign or malformed state."""
        check_state_keys(state, _STATE_KEYS, self.kind)
        self._tracker.load_state_dict(state["tracker"])
        warn_option_changes(state["options"], asdict(self.options), self.kind)
        self._step = int(state["step"])
        self._epoch = int(state["epoch"])
        self._order = [int(i) for i in state["order"]]
        set_rng_state(self._rng, state["rng"])
        self._draw_rates = [np.nan if r is None else float(r) for r in state["draw_rates"]]
