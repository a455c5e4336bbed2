"""The drift model keeps the pass rates of prompts not drawn for a while close to the improving
policy's, where the stored rates go stale; it survives a checkpoint."""

import numpy as np
import pytest

from curricula import GroupOutcome, PassRateStore, ProgressiveCurriculum, ProgressiveOptions
from curricula.drift import DriftModel, smoothed_logit
from curricula.tracking import PromptTracker


def _simulate(drift: bool, steps: int = 20, n: int = 300, batch: int = 32, seed: int = 0) -> tuple[float, float]:
    """A policy whose ability rises by 3 logits over ``steps`` on prompts of fixed difficulty
    (prefiltered at ability 0, 8 samples each); returns the mean absolute error of the tracker's
    rates against the true ones at the end, over all prompts and over those never drawn again."""
    rng = np.random.default_rng(seed)
    difficulty = rng.uniform(-3, 3, n)
    uids = [f"p{i}" for i in range(n)]

    def true_rate(ability: float) -> np.ndarray:
        return 1 / (1 + np.exp(-(ability - difficulty)))

    store = PassRateStore()
    for uid, p in zip(uids, true_rate(0.0)):
        store.add(uid, 8, int(rng.binomial(8, p)), training=False)
    tracker = PromptTracker(uids, store, None, DriftModel(n) if drift else None)
    drawn = np.zeros(n, dtype=bool)
    for step in range(1, steps + 1):
        p = true_rate(3.0 * step / steps)
        idx = rng.choice(n, batch, replace=False)
        drawn[idx] = True
        wins = rng.binomial(8, p[idx])
        tracker.observe([GroupOutcome(uids[i], [float(k < w) for k in range(8)], [k < w for k in range(8)])
                         for i, w in zip(idx, wins)])
    err = np.abs(tracker.rates - true_rate(3.0))
    return float(err.mean()), float(err[~drawn].mean())


def test_drift_tracks_the_improving_policy_where_stored_rates_go_stale() -> None:
    stale_all, stale_unseen = _simulate(drift=False)
    fresh_all, fresh_unseen = _simulate(drift=True)
    assert stale_unseen > 0.2  # the setting is one where staleness matters
    assert fresh_unseen < 0.5 * stale_unseen and fresh_all < 0.6 * stale_all


def test_a_prompt_just_measured_keeps_its_raw_rate() -> None:
    model = DriftModel(3)
    model.measure(0, 2, 8)
    model.measure(1, 6, 8)
    model.observe([(0, 7, 8)])  # prompt 0 improved by much more than predicted
    assert model.theta > 0
    rates = model.adjust(np.array([7 / 8, 6 / 8, np.nan]))
    assert rates[0] == 7 / 8 and rates[1] > 6 / 8 and np.isnan(rates[2])
    assert smoothed_logit(0, 8) == -smoothed_logit(8, 8)


def test_progressive_curriculum_with_drift_resumes_exactly() -> None:
    uids = [f"u{i}" for i in range(40)]
    def table() -> PassRateStore:
        return PassRateStore.from_rows({"uid": u, "attempts": 8, "successes": i % 9} for i, u in enumerate(uids))

    options = ProgressiveOptions(drift=True, retire_threshold=None)

    def run(c: ProgressiveCurriculum, steps: range) -> list[list[int]]:
        out = []
        for _ in steps:
            batch = c.next_batch(8)
            c.observe([GroupOutcome(uids[i], [1.0] * 7 + [0.0], [True] * 7 + [False]) for i in batch])
            out.append(batch)
        return out

    whole = ProgressiveCurriculum(uids, seed=1, total_steps=6, store=table(), options=options)
    reference = run(whole, range(6))
    assert whole.metrics()["curriculum/drift_logit"] > 0  # everything drawn did better than its table rate
    first = ProgressiveCurriculum(uids, seed=1, total_steps=6, store=table(), options=options)
    head = run(first, range(3))
    resumed = ProgressiveCurriculum(uids, seed=1, total_steps=6, options=options)
    resumed.load_state_dict(first.state_dict())
    assert head + run(resumed, range(3, 6)) == reference


def test_drift_step_is_checked() -> None:
    with pytest.raises(ValueError, match="drift_step"):
        ProgressiveOptions(drift=True, drift_step=0.0)
