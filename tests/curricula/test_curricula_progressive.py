"""ProgressiveCurriculum: determinism, easy-to-hard movement, exhaustion, epochs, shuffling,
unknown prompts, retirement, refill, metrics and defaults."""

import warnings
from collections import Counter
from itertools import pairwise

import numpy as np
import pytest

from curricula import GroupOutcome, ProgressiveCurriculum, ProgressiveOptions, bucket_of
from curricula.testing import make_uids, store_with_rates


def curriculum(n_per_bucket=(10, 10, 10, 10, 10, 10), total_steps=10, seed=0, **options):
    """Prompts with k/8 offline pass rates, ``n_per_bucket[k]`` of each (default: a 0.75 prefilter)."""
    successes = [k for k, n in enumerate(n_per_bucket) for _ in range(n)]
    uids = make_uids(len(successes))
    return ProgressiveCurriculum(uids, seed=seed, total_steps=total_steps,
                                 store=store_with_rates(uids, successes),
                                 options=ProgressiveOptions(**options)), np.array(successes) / 8


# Several tests run a few epochs with the default schedule_over="steps" on purpose.
many_epochs = pytest.mark.filterwarnings("ignore:.*set schedule_over='epoch'")


def all_correct(uid, n=8):
    return GroupOutcome(uid=uid, rewards=[1.0] * n, correct=[True] * n)


def test_same_seed_same_batches_other_seed_different():
    runs = [[curriculum(seed=s)[0] for s in (0, 0, 1)]]
    batches = [[c.next_batch(6) for _ in range(8)] for c in runs[0]]
    assert batches[0] == batches[1]
    assert batches[0] != batches[2]


def test_batches_move_from_easy_to_hard():
    cur, rates = curriculum(n_per_bucket=(100,) * 6, total_steps=10)
    centres, target_means, batch_means = [], [], []
    for _ in range(10):
        idx = cur.next_batch(24)  # 240 of 600 prompts: less than an epoch, as in the paper's regime
        m = cur.metrics()
        centres.append(m["curriculum/target_center"])
        target_means.append(m["curriculum/target_mean_pass_rate"])
        batch_means.append(m["curriculum/batch_prior_pass_rate"])
        assert m["curriculum/batch_prior_pass_rate"] == pytest.approx(rates[idx].mean())
    assert centres[0] == 0.625 and centres[-1] == 0.0  # default range: the data's pass rates
    assert all(a > b for a, b in pairwise(centres))
    assert all(a >= b for a, b in pairwise(target_means))
    assert all(a >= b - 1e-9 for a, b in pairwise(batch_means))
    assert batch_means[0] >= 0.5 and batch_means[-1] <= 0.1


def rollout_means(mode, epochs=3, steps_per_epoch=4, batch_size=15):
    cur, rates = curriculum(n_per_bucket=(10,) * 6, total_steps=epochs * steps_per_epoch, schedule_over=mode)
    centres, means = [], []
    for _ in range(epochs * steps_per_epoch):
        idx = cur.next_batch(batch_size)
        centres.append(cur.metrics()["curriculum/target_center"])
        means.append(rates[idx].mean())
    return np.array(centres).reshape(epochs, -1), np.array(means).reshape(epochs, -1)


def test_epoch_schedule_sweeps_easy_to_hard_within_every_epoch():
    centres, means = rollout_means("epoch")
    for epoch_centres, epoch_means in zip(centres, means):
        assert epoch_centres[0] == 0.625 and epoch_centres[-1] == 0.0
        assert all(a > b for a, b in pairwise(epoch_means))


def test_steps_schedule_over_many_epochs_warns_and_serves_skipped_easy_prompts_last():
    with pytest.warns(UserWarning, match="schedule_over='epoch'"):
        centres, means = rollout_means("steps")
    assert all(a > b for a, b in pairwise(centres.ravel()))
    assert means[-1, -1] > means[0, 0] - 0.1  # the leftover rule: the hard end ends easy


def test_first_batch_prefers_easiest_available_and_mixes_neighbours():
    cur, rates = curriculum(n_per_bucket=(50,) * 6)
    idx = cur.next_batch(40)
    counts = Counter(bucket_of(rates[idx], 9).tolist())
    assert counts[5] == max(counts.values())  # 5/8: the easiest bucket a 0.75 prefilter leaves
    assert len(counts) >= 3  # sigma 0.15 mixes neighbouring difficulties, never a 1-bucket batch


def test_exhausted_bucket_leftover_goes_to_largest_pools():
    # 2 easy prompts (5/8), 3 at 4/8, 20 at 0/8, 10 at 2/8; a narrow target at the easy end
    cur, rates = curriculum(n_per_bucket=(20, 0, 10, 0, 3, 2), sigma=0.02)
    idx = cur.next_batch(6)
    assert sorted(bucket_of(rates[idx], 9).tolist()) == [0, 0, 0, 0, 5, 5]


@many_epochs
def test_epoch_refill_draws_every_prompt_once_per_epoch():
    cur, _ = curriculum(n_per_bucket=(3, 3, 0, 0, 2, 2), total_steps=5)  # 10 prompts
    batches = [cur.next_batch(4) for _ in range(5)]
    assert all(len(set(b)) == 4 for b in batches)  # never a repeat inside a batch
    flat = [i for b in batches for i in b]
    assert Counter(flat) == {i: 2 for i in range(10)}
    assert set(flat[:8]) | set(batches[2]) == set(range(10))
    assert cur.metrics()["curriculum/epoch"] == 2.0
    assert cur.metrics()["curriculum/epoch_remaining"] == 0.0


@many_epochs
def test_epoch_boundary_inside_a_batch_skips_prompts_already_in_it():
    uids = make_uids(3)
    cur = ProgressiveCurriculum(uids, total_steps=2, store=store_with_rates(uids, [0, 4, 8]),
                                options=ProgressiveOptions(sigma=0.05))
    assert sorted(cur.next_batch(2)) == [1, 2]  # centre 1.0: the easy one, then the nearest
    # centre 0.0: p0 ends epoch 1; the new epoch must not hand p0 out again in the same batch
    assert sorted(cur.next_batch(2)) == [0, 1]
    assert cur.metrics()["curriculum/epoch_remaining"] == 2.0  # p0 and p2 stay in epoch 2


@many_epochs
def test_batch_larger_than_dataset_repeats_prompts():
    cur, _ = curriculum(n_per_bucket=(1, 1, 1))
    batch = cur.next_batch(7)
    assert len(batch) == 7 and set(batch) == {0, 1, 2}


def test_each_batch_is_shuffled():
    cur, rates = curriculum(n_per_bucket=(30,) * 6, total_steps=20, sigma=0.3)
    positions_of_easiest = []
    sorted_batches = 0
    for _ in range(20):
        idx = cur.next_batch(9)
        b = bucket_of(rates[idx], 9)
        sorted_batches += bool((np.diff(b) >= 0).all() or (np.diff(b) <= 0).all())
        positions_of_easiest.append(int(np.argmax(b)))
    assert sorted_batches <= 2  # allocation works bucket by bucket; only a shuffle breaks that order
    assert len(set(positions_of_easiest)) >= 5


def test_unknown_prompts_are_placed_at_the_prior():
    uids = make_uids(12)
    store = store_with_rates(uids[:8], [0, 0, 0, 0, 1, 1, 1, 1])  # p8..p11 unknown
    cur = ProgressiveCurriculum(uids, total_steps=5, store=store,
                                options=ProgressiveOptions(unknown_prior=1.0, sigma=0.05, center_start=1.0))
    assert sorted(cur.next_batch(4)) == [8, 9, 10, 11]  # prior 1.0 + centre 1.0: measured first
    m = cur.metrics()
    assert m["curriculum/batch_unknown_frac"] == 1.0 and "curriculum/batch_prior_pass_rate" not in m
    assert sum(v for k, v in m.items() if k.startswith("curriculum/hist/")) == 0.0
    cur2 = ProgressiveCurriculum(uids, total_steps=5, store=store,
                                 options=ProgressiveOptions(unknown_prior=0.0, sigma=0.05))
    assert not {8, 9, 10, 11} & set(cur2.next_batch(4))  # prior 0.0: the hardest, drawn last


def test_observe_moves_prompt_to_its_new_bucket():
    uids = make_uids(6)
    store = store_with_rates(uids, [0, 0, 0, 0, 0, 0])
    cur = ProgressiveCurriculum(uids, total_steps=10, store=store,
                                options=ProgressiveOptions(sigma=0.05, retire_threshold=None))
    cur.observe([GroupOutcome(uid="p3", rewards=[1, 1, 1, 0], correct=[True, True, True, False])])
    assert cur.next_batch(1) == [3]  # now at 0.75, the easiest
    assert cur.metrics()["curriculum/batch_prior_pass_rate"] == 0.75


@many_epochs
def test_solved_prompts_retire_and_are_never_sampled_again():
    cur, _ = curriculum(n_per_bucket=(5, 5))  # 10 prompts, default retirement: 16 samples all correct
    cur.observe([all_correct("p0", 8)])
    assert cur.metrics()["curriculum/retired"] == 0.0  # 8 samples < min_attempts_to_retire
    cur.observe([all_correct("p0", 8), all_correct("p1", 16)])
    assert cur.metrics()["curriculum/retired"] == 2.0
    drawn = [i for _ in range(10) for i in cur.next_batch(4)]
    assert 0 not in drawn and 1 not in drawn and Counter(drawn) == {i: 5 for i in range(2, 10)}


def test_prompt_retired_mid_epoch_leaves_the_pool_at_once():
    cur, _ = curriculum(n_per_bucket=(6,), sigma=0.05)
    first = cur.next_batch(2)
    rest = sorted(set(range(6)) - set(first))
    cur.observe([all_correct(f"p{rest[0]}", 16)])
    drawn = cur.next_batch(3)
    assert sorted(drawn) == rest[1:] and cur.metrics()["curriculum/epoch"] == 1.0


def test_retirement_can_be_disabled_and_all_retired_falls_back_with_warning():
    cur, _ = curriculum(n_per_bucket=(2,), retire_threshold=None)
    cur.observe([all_correct("p0", 32)])
    assert cur.metrics()["curriculum/retired"] == 0.0
    cur, _ = curriculum(n_per_bucket=(2,))
    cur.observe([all_correct("p0", 16), all_correct("p1", 16)])
    with pytest.warns(UserWarning, match="every prompt is retired"):
        assert sorted(cur.next_batch(2)) == [0, 1]


def test_refill_keeps_the_step_and_centre():
    cur, _ = curriculum(total_steps=5)
    first = cur.next_batch(4)
    centre = cur.metrics()["curriculum/target_center"]
    extra = cur.next_batch(3, refill=True)
    m = cur.metrics()
    assert m["curriculum/target_center"] == centre == 0.625
    assert not set(first) & set(extra)
    assert sum(v for k, v in m.items() if k.startswith("curriculum/hist/")) == pytest.approx(1.0)
    cur.next_batch(4)
    assert cur.metrics()["curriculum/target_center"] == pytest.approx(0.625 * 3 / 4)


def test_metrics_are_flat_floats_with_histogram():
    cur, _ = curriculum()
    cur.next_batch(8)
    m = cur.metrics()
    assert all(k.startswith("curriculum/") and type(v) is float for k, v in m.items())
    hist = {k: v for k, v in m.items() if k.startswith("curriculum/hist/")}
    assert len(hist) == 9 and "curriculum/hist/0.625" in hist and sum(hist.values()) == pytest.approx(1.0)


def test_default_centre_range_follows_the_data_and_can_be_overridden():
    cur, _ = curriculum(n_per_bucket=(0, 4, 4, 4))  # rates 1/8 .. 3/8
    cur.next_batch(1)
    assert cur.metrics()["curriculum/target_center"] == 0.375
    assert cur.state_dict()["center_range"] == [0.375, 0.125]
    no_evidence = ProgressiveCurriculum(make_uids(5), total_steps=3)  # nothing known: full axis
    assert no_evidence.state_dict()["center_range"] == [1.0, 0.0]
    fixed, _ = curriculum(center_start=0.9, center_end=0.2)
    assert fixed.state_dict()["center_range"] == [0.9, 0.2]


def test_default_options_are_the_documented_ones():
    o = ProgressiveOptions()
    assert (o.center_start, o.center_end, o.sigma, o.schedule, o.num_buckets) == (None, None, 0.15, "linear", 9)
    assert (o.unknown_prior, o.retire_threshold, o.min_attempts_to_retire) == (0.5, 1.0, 16)


@pytest.mark.parametrize("bad, match", [
    ({"sigma": 0.0}, "sigma"), ({"center_start": 1.5}, "center_start"), ({"num_buckets": 1}, "num_buckets"),
    ({"schedule": "step"}, "schedule"), ({"retire_threshold": 0.0}, "retire_threshold"),
    ({"min_attempts_to_retire": 0}, "min_attempts_to_retire"), ({"unknown_prior": -0.1}, "unknown_prior"),
])
def test_bad_options_name_the_field(bad, match):
    with pytest.raises(ValueError, match=match):
        ProgressiveOptions(**bad)


def test_bad_construction_arguments():
    with pytest.raises(ValueError, match="total_steps"):
        ProgressiveCurriculum(["a"], total_steps=0)
    with pytest.raises(ValueError, match="unique"):
        ProgressiveCurriculum(["a", "a"], total_steps=1)
    with pytest.raises(ValueError, match="at least one prompt"):
        ProgressiveCurriculum([], total_steps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="batch_size"):
            ProgressiveCurriculum(["a"], total_steps=1).next_batch(0)
