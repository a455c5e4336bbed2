"""Builders and a contract check for testing curricula, the built-ins and your own.

``check_curriculum_contract(make)`` runs a curriculum against a simulated policy and asserts the
``Curriculum`` contract (indices in range, JSON state, deterministic resume); use it in the tests
of a user-written curriculum.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import numpy as np

from curricula.base import Curriculum
from curricula.outcome import GroupOutcome
from curricula.store import PassRateStore


def make_uids(n: int, prefix: str = "p") -> list[str]:
    """``["p0", "p1", ...]``."""
    return [f"{prefix}{i}" for i in range(n)]


def store_with_rates(uids: Sequence[str], successes: Sequence[int], attempts: int = 8) -> PassRateStore:
    """A store seeded offline: ``uids[i]`` solved ``successes[i]`` of ``attempts`` times."""
    store = PassRateStore()
    for uid, s in zip(uids, successes, strict=True):
        store.add(uid, attempts, int(s), training=False)
    return store


def simulate_outcomes(uids: Sequence[str], indices: Sequence[int], true_rates: Sequence[float] | np.ndarray,
                      rng: np.random.Generator, group_size: int = 8) -> list[GroupOutcome]:
    """Score ``group_size`` samples per drawn prompt with a Bernoulli(true_rate) "policy".

    Rewards equal the correct flags (1.0 / 0.0), as with a plain accuracy reward.
    """
    outcomes = []
    for i in indices:
        correct = rng.random(group_size) < true_rates[i]
        outcomes.append(GroupOutcome(uid=uids[i], rewards=correct.astype(float).tolist(), correct=correct.tolist()))
    return outcomes


def check_curriculum_contract(make: Callable[[], Curriculum], num_prompts: int, batch_size: int = 4,
                              steps_before: int = 5, steps_after: int = 5, seed: int = 0) -> None:
    """Assert the ``Curriculum`` contract for a factory ``make()`` building over ``make_uids(num_prompts)``.

    Runs ``steps_before`` steps with simulated outcomes, round-trips ``state_dict`` through JSON
    into a fresh ``make()`` instance, then checks both produce the same ``steps_after`` batches and
    metrics are flat floats prefixed ``curriculum/``. Raises AssertionError on a violation.
    """
    sim = np.random.default_rng(seed)
    true_rates = sim.random(num_prompts)
    original = make()
    uids = make_uids(num_prompts)
    for _ in range(steps_before):
        idx = original.next_batch(batch_size)
        assert len(idx) == batch_size and all(0 <= i < num_prompts for i in idx), idx
        original.observe(simulate_outcomes(uids, idx, true_rates, sim))
    state = json.loads(json.dumps(original.state_dict()))
    restored = make()
    restored.load_state_dict(state)
    for _ in range(steps_after):
        a, b = original.next_batch(batch_size), restored.next_batch(batch_size)
        assert a == b, f"resumed curriculum diverged: {a} != {b}"
        outcomes = simulate_outcomes(uids, a, true_rates, sim)
        original.observe(outcomes)
        restored.observe(outcomes)
        metrics = original.metrics()
        assert metrics == restored.metrics()
        assert all(k.startswith("curriculum/") and isinstance(v, float) for k, v in metrics.items()), metrics
