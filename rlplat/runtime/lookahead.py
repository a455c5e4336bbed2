"""Asynchronous GRPO (``grpo.async.max_staleness > 0``): the next step's rollout runs ahead.

The driver hands step k + 1's prompts to ``Lookahead.submit`` before it trains step k; a background
thread generates and scores them (its Ray waits release the GIL) while the learners train, and step
k + 1 starts from ``Lookahead.take``. The engines must be idle before weights are loaded into them,
so the driver calls ``wait`` after training and before the sync. Samples carry the version of the
weights that generated them (``Sample.weights_version``), and ``sync_due`` decides when the engines
get new weights so that no trained sample lags the learners by more than ``max_staleness``.

The thread never touches the curriculum: prompts dropped while in flight are replaced by the driver
when it takes the batch. A checkpoint stores the finished batch in flight (``to_plain``), so a
resumed run trains on the same samples as the uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from rlbase import from_mapping, to_plain
from rlplat.runtime.timing import PhaseTimer
from rlplat.types import ScoredGroup


def sync_due(max_staleness: int, learner_version: int, engine_version: int) -> bool:
    """Whether the engines must get the learners' weights (``learner_version``) now.

    The next batch generated is trained one step later, by weights ``learner_version + 1``; without a
    sync it would lag them by ``learner_version + 1 - engine_version``. Synchronous GRPO
    (``max_staleness=0``) syncs after every step.
    """
    return max_staleness == 0 or learner_version + 1 - engine_version > max_staleness


class Lookahead:
    """At most one future step's scored groups in flight, on one background thread."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rlplat-lookahead")
        self._step: int | None = None
        self._future: Future[list[ScoredGroup]] | None = None
        self._timer = PhaseTimer()  # the phases of the batch in flight

    def submit(self, step: int, work: Callable[[PhaseTimer], list[ScoredGroup]]) -> None:
        """Start ``work`` (step ``step``'s generation and scoring, timing its phases on the timer it
        is given) in the background."""
        assert self._future is None, "one step in flight at most"
        self._timer = PhaseTimer()
        self._step, self._future = step, self._pool.submit(work, self._timer)

    def preload(self, step: int, groups: Sequence[ScoredGroup]) -> None:
        """Step ``step``'s finished batch, restored from a checkpoint (its phases cost this run nothing)."""
        future: Future[list[ScoredGroup]] = Future()
        future.set_result(list(groups))
        self._step, self._future, self._timer = step, future, PhaseTimer()

    def wait(self) -> None:
        """Block until the batch in flight is generated and scored (the engines are then idle);
        re-raises what the background work raised (the batch is then dropped)."""
        if self._future is None:
            return
        try:
            self._future.result()
        except BaseException:
            self._step, self._future = None, None
            raise

    def take(self, step: int, timer: PhaseTimer | None = None) -> list[ScoredGroup] | None:
        """The batch generated for ``step`` (waiting for it), or None when none was submitted; its
        phase seconds are added to ``timer``."""
        if self._future is None or self._step != step:
            return None
        future, self._step, self._future = self._future, None, None
        groups = future.result()
        if timer is not None:
            timer.add(self._timer)
        return groups

    def state(self) -> list[dict[str, Any]]:
        """The finished batch in flight as plain data, for a checkpoint (``[]``: none)."""
        if self._future is None or not self._future.done() or self._future.exception() is not None:
            return []
        return [to_plain(g) for g in self._future.result()]

    def close(self) -> None:
        """Stop the thread (a batch still running is abandoned: its Ray calls end with the actors)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def groups_from_state(data: Sequence[dict[str, Any]]) -> list[ScoredGroup]:
    """Inverse of ``Lookahead.state``."""
    return [from_mapping(ScoredGroup, g, "lookahead") for g in data]
