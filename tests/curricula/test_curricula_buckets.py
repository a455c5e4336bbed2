"""Pure pieces of progressive batching: buckets, schedule, target, allocation."""

from itertools import pairwise

import numpy as np
import pytest

from curricula import allocate, bucket_centres, bucket_of, center_at, resolve_center_range, target_distribution


def test_k_over_8_rates_land_on_their_own_bucket():
    assert bucket_of(np.arange(9) / 8, 9).tolist() == list(range(9))
    # continuous training rates go to the nearest centre, halves upwards (no banker's rounding)
    assert bucket_of([3 / 16, 5 / 16, 0.06, 0.99, 1.0, 0.0], 9).tolist() == [2, 3, 0, 8, 8, 0]
    assert bucket_centres(9)[1] == pytest.approx(0.125)
    with pytest.raises(ValueError):
        bucket_centres(1)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_center_moves_monotonically_from_start_to_end(schedule):
    centres = [center_at(t, 20, 1.0, 0.0, schedule) for t in range(25)]
    assert centres[0] == 1.0 and centres[19] == pytest.approx(0.0) and centres[24] == pytest.approx(0.0)
    assert all(a > b for a, b in pairwise(centres[:20]))
    assert center_at(0, 1, 0.8, 0.2) == 0.8


def test_cosine_lingers_at_the_ends_linear_does_not():
    assert center_at(2, 21, 1.0, 0.0, "linear") == pytest.approx(0.9)
    assert center_at(2, 21, 1.0, 0.0, "cosine") > 0.97
    assert center_at(10, 21, 1.0, 0.0, "cosine") == pytest.approx(0.5)
    with pytest.raises(ValueError, match="schedule"):
        center_at(0, 10, 1.0, 0.0, "step")  # type: ignore[arg-type]  # on purpose: no such schedule


def test_target_is_gaussian_and_renormalised_over_available_buckets():
    centres = bucket_centres(9)
    full = target_distribution(centres, 0.5, 0.15)
    assert full.sum() == pytest.approx(1.0) and full.argmax() == 4
    assert full[3] / full[4] == pytest.approx(np.exp(-(0.125**2) / (2 * 0.15**2)))  # ~0.71
    # after a 0.75 prefilter, buckets 6..8 are empty: a centre of 1.0 means "easiest available"
    available = np.arange(9) < 6
    t = target_distribution(centres, 1.0, 0.15, available)
    assert t[6:].sum() == 0 and t.argmax() == 5 and t.sum() == pytest.approx(1.0)
    # a very narrow Gaussian far from every available bucket must not give 0/0
    t = target_distribution(centres, 1.0, 0.001, np.arange(9) < 2)
    assert t.tolist() == [0, 1] + [0] * 7


def test_mean_of_target_decreases_with_centre():
    centres = bucket_centres(9)
    available = np.array([1, 1, 0, 1, 1, 1, 0, 0, 0], dtype=bool)
    means = [target_distribution(centres, c, 0.15, available) @ centres for c in np.linspace(1, 0, 21)]
    assert all(a > b for a, b in pairwise(means))


def test_allocate_follows_target_when_buckets_hold_enough():
    target = np.array([0.1, 0.2, 0.4, 0.2, 0.1])
    counts = allocate(target, np.full(5, 100), 10)
    assert counts.tolist() == [1, 2, 4, 2, 1]
    # largest remainder: 7 slots -> ideal [0.7, 1.4, 2.8, 1.4, 0.7]
    assert allocate(target, np.full(5, 100), 7).tolist() == [1, 1, 3, 1, 1]


def test_allocate_caps_by_bucket_and_fills_from_largest_remaining_pools():
    target = np.array([0.0, 0.0, 0.0, 0.0, 1.0])
    available = np.array([3, 9, 0, 5, 2])
    counts = allocate(target, available, 8)
    # 2 from the target bucket; 6 leftovers one at a time to the largest remaining pool:
    # pools 3,9,5 -> bucket 1 until it ties bucket 3 (5 vs 5), then alternate
    assert counts.tolist() == [0, 5, 0, 1, 2]
    assert counts.sum() == 8 and (counts <= available).all()
    assert allocate(target, available, 19).tolist() == available.tolist()
    with pytest.raises(ValueError, match="cannot allocate"):
        allocate(target, available, 20)


def test_resolve_center_range():
    assert resolve_center_range(np.arange(6) / 8, 9, None, None) == (0.625, 0.0)
    assert resolve_center_range([0.3, np.nan, 0.1], 9, None, 0.05) == (0.25, 0.05)
    assert resolve_center_range([np.nan, 0.5, 0.52], 9, None, None) == (1.0, 0.0)  # one bucket: full axis
    assert resolve_center_range([], 9, 0.7, None) == (0.7, 0.0)
