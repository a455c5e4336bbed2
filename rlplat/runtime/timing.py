"""Wall time per phase of a step (``time/<phase>_s`` in the metrics line)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class PhaseTimer:
    """Wall time per phase of a step, summed over repeats (dynamic sampling generates more than once)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.total = 0.0
        # "rollout/engine": the engines' own share of "rollout" (``Generation.engine_s``).
        self.seconds: dict[str, float] = {"rollout": 0.0, "rollout/engine": 0.0, "reward": 0.0, "train": 0.0,
                                          "rollout_wait": 0.0, "sync": 0.0}

    def add(self, other: PhaseTimer) -> None:
        """Add ``other``'s phase seconds (a batch generated ahead, overlapping the previous step)."""
        for name, seconds in other.seconds.items():
            self.seconds[name] += seconds

    def stop(self) -> None:
        """Fix the step's total time (``time/step_s``)."""
        self.total = time.perf_counter() - self.start

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block as ``name``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t0
