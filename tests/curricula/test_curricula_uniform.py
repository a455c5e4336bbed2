"""UniformCurriculum: the baseline covers every prompt once per epoch, deterministically."""

from collections import Counter

import pytest

from curricula import GroupOutcome, UniformCurriculum, UniformOptions
from curricula.testing import make_uids, store_with_rates


@pytest.mark.parametrize("batch_size", [5, 3, 7])
def test_every_prompt_once_per_epoch(batch_size):
    n = 20
    cur = UniformCurriculum(make_uids(n), seed=3)
    flat = [i for _ in range(3 * n // batch_size + 1) for i in cur.next_batch(batch_size)]
    for epoch in range(3):
        assert sorted(flat[epoch * n:(epoch + 1) * n]) == list(range(n))
    assert flat[:n] != list(range(n))  # shuffled, not in dataset order


def test_boundary_batch_has_no_repeats_and_orders_differ_between_epochs():
    cur = UniformCurriculum(make_uids(10), seed=0)
    batches = [cur.next_batch(4) for _ in range(5)]
    assert all(len(set(b)) == 4 for b in batches)
    assert Counter(i for b in batches for i in b) == {i: 2 for i in range(10)}
    assert cur.metrics()["curriculum/epoch"] == 2.0
    assert [i for b in batches for i in b][:10] != [i for b in batches for i in b][10:]


def test_deterministic_for_a_seed():
    a, b, c = (UniformCurriculum(make_uids(30), seed=s) for s in (1, 1, 2))
    seq = [[x.next_batch(7) for _ in range(6)] for x in (a, b, c)]
    assert seq[0] == seq[1] != seq[2]


def test_metrics_and_optional_retirement():
    uids = make_uids(6)
    cur = UniformCurriculum(uids, store=store_with_rates(uids[:3], [0, 4, 8]),
                            options=UniformOptions(retire_threshold=1.0, min_attempts_to_retire=4))
    cur.observe([GroupOutcome(uid="p5", rewards=[1] * 4, correct=[True] * 4)])
    drawn = [i for _ in range(5) for i in cur.next_batch(5)]
    assert 5 not in drawn and Counter(drawn) == {i: 5 for i in range(5)}
    m = cur.metrics()
    assert m["curriculum/retired"] == 1.0 and "curriculum/target_center" not in m
    assert all(type(v) is float for v in m.values())
    assert m["curriculum/batch_unknown_frac"] + sum(v for k, v in m.items() if "/hist/" in k) == pytest.approx(1.0)


def test_uniform_never_retires_by_default():
    cur = UniformCurriculum(make_uids(2))
    cur.observe([GroupOutcome(uid="p0", rewards=[1] * 64, correct=[True] * 64)])
    assert sorted(cur.next_batch(2)) == [0, 1]
