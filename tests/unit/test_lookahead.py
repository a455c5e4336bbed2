"""Asynchronous GRPO's pure parts (``rlplat.runtime.lookahead``): when to sync, so that no trained
sample lags by more than ``max_staleness``; the background batch; its checkpoint round trip."""

from __future__ import annotations

import json
import threading

import pytest

from rlplat.runtime.lookahead import Lookahead, groups_from_state, sync_due
from rlplat.runtime.timing import PhaseTimer
from rlplat.types import PromptItem, Sample, ScoredGroup, ScoredSample


def _simulate(max_staleness: int, steps: int, forced: frozenset[int] = frozenset()) -> tuple[list[int], int]:
    """The loop's version bookkeeping: each step's samples' lag when trained, and the syncs made.

    Step 1 generates synchronously; with ``max_staleness > 0`` step s + 1's batch is generated
    during step s, by the engines' weights of that moment (as ``GRPOLoop.step`` does)."""
    learner = engine = syncs = 0
    batch_version = engine  # step 1's batch
    lags = []
    for step in range(1, steps + 1):
        ahead = engine if max_staleness and step < steps else None  # submitted before training
        lags.append(learner - batch_version)
        learner += 1  # training
        if step in forced or step == steps or sync_due(max_staleness, learner, engine):
            engine, syncs = learner, syncs + 1
        batch_version = ahead if ahead is not None else engine
    return lags, syncs


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_no_sample_lags_by_more_than_max_staleness(k: int) -> None:
    lags, syncs = _simulate(k, 24)
    assert max(lags) == k and lags[0] == 0
    # K = 0 and 1 sync after every step; K > 1 skips syncs: about one in K.
    assert syncs == (24 if k <= 1 else pytest.approx(24 / k, abs=1))


def test_forced_syncs_keep_the_bound() -> None:
    # Checkpoints, evaluations and a stop sync out of turn; the count restarts from there.
    lags, syncs = _simulate(3, 20, frozenset({4, 5, 11}))
    assert max(lags) <= 3 and syncs > _simulate(3, 20)[1]


def _groups(version: int) -> list[ScoredGroup]:
    item = PromptItem(uid="p:1", index=1, question="1+2", text="<s>1+2", reference="3", system="on",
                      metadata={"thinking": "on"})
    samples = tuple(ScoredSample(Sample((5, 6, 2), "3", (-0.25, -1e-9, float("-inf")), version, "stop"), 1.0, True,
                                 details={"math": 1.0}) for _ in range(2))
    return [ScoredGroup(item, (1, 3, 4), samples)]


def test_a_batch_in_flight_survives_a_checkpoint_exactly() -> None:
    ahead = Lookahead()
    ahead.submit(5, lambda _: _groups(4))
    ahead.wait()
    saved = json.loads(json.dumps(ahead.state()))  # as RunState is written and read
    restored = Lookahead()
    restored.preload(5, groups_from_state(saved))
    assert restored.take(5) == _groups(4) == ahead.take(5)
    assert ahead.state() == [] and ahead.take(5) is None
    ahead.close()
    restored.close()


def test_the_batch_runs_in_the_background_and_is_taken_only_for_its_step() -> None:
    ahead, release = Lookahead(), threading.Event()
    ahead.submit(3, lambda _: (release.wait(30), _groups(2))[1])
    assert ahead.state() == []  # not finished: nothing to checkpoint yet
    assert ahead.take(4) is None
    release.set()
    assert ahead.take(3) == _groups(2)
    ahead.close()


def test_a_failure_in_flight_reaches_the_driver_and_drops_the_batch() -> None:
    ahead = Lookahead()

    def fail(_: PhaseTimer) -> list[ScoredGroup]:
        raise RuntimeError("engine lost")

    ahead.submit(2, fail)
    with pytest.raises(RuntimeError, match="engine lost"):
        ahead.wait()
    assert ahead.take(2) is None and ahead.state() == []
    ahead.close()


def test_the_phases_of_the_batch_in_flight_count_for_the_step_that_takes_it() -> None:
    ahead, restored = Lookahead(), Lookahead()

    def work(timer: PhaseTimer) -> list[ScoredGroup]:
        timer.seconds["rollout"] += 1.5  # what ``timer.phase("rollout")`` adds around generation
        timer.seconds["reward"] += 0.25
        return _groups(1)

    ahead.submit(2, work)
    taking = PhaseTimer()
    assert ahead.take(2, taking) == _groups(1)
    assert (taking.seconds["rollout"], taking.seconds["reward"], taking.seconds["train"]) == (1.5, 0.25, 0.0)
    restored.preload(2, _groups(1))  # generated before the restart: no seconds in this run
    resumed = PhaseTimer()
    assert restored.take(2, resumed) == _groups(1) and sum(resumed.seconds.values()) == 0.0
    ahead.close()
    restored.close()
