"""Prefilter thresholds and dataset writing; DAPO dynamic sampling: filter, batch fill, metrics, refill loop."""

import json

import numpy as np
import pytest

from curricula import (
    GroupOutcome,
    PassRateStore,
    UniformCurriculum,
    dynamic_dropped_frac,
    dynamic_sampling_metrics,
    fill_batch,
    filter_rows,
    prefilter,
    split_informative,
    write_filtered_dataset,
    write_pass_rate_table,
)
from curricula.testing import make_uids, simulate_outcomes, store_with_rates


def test_paper_threshold_with_8_samples():
    # k/8 for k = 0..8: the paper drops >= 0.75, i.e. 6, 7, 8 of 8.
    store = store_with_rates([f"k{k}" for k in range(9)], range(9))
    result = prefilter(store, drop_at_or_above=0.75)
    assert result.dropped_easy == ("k6", "k7", "k8")
    assert result.kept_uids == ("k0", "k1", "k2", "k3", "k4", "k5")
    assert result.dropped_zero == ()
    assert result.summary() == {"prefilter/kept": 6.0, "prefilter/dropped_easy": 3.0, "prefilter/dropped_zero": 0.0}


def test_drop_zero_and_mapping_input():
    result = prefilter({"a": 0.0, "b": 0.625, "c": 0.75, "d": 0.7499999999999}, drop_zero=True)
    assert result.kept_uids == ("b",)
    assert set(result.dropped_easy) == {"c", "d"}  # float noise below 0.75 still counts as 6/8
    assert result.dropped_zero == ("a",)
    assert result.dropped == frozenset({"a", "c", "d"})


def test_prompts_without_samples_are_kept_and_bad_inputs_raise():
    store = PassRateStore()
    store.add("x", 0, 0, training=False)
    assert prefilter(store).kept_uids == ("x",)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        prefilter({"a": 1.5})
    with pytest.raises(ValueError, match="drop_at_or_above"):
        prefilter({"a": 0.5}, drop_at_or_above=0.0)


def test_write_filtered_dataset_keeps_unknown_rows(tmp_path):
    rows = [{"uid": "k5", "q": "five"}, {"uid": "k6", "q": "six"}, {"uid": "new", "q": "not in table"}]
    result = prefilter(store_with_rates(["k5", "k6"], [5, 6]))
    path = tmp_path / "train.filtered.jsonl"
    assert write_filtered_dataset(rows, result, path) == 2
    assert [json.loads(line) for line in path.read_text().splitlines()] == [rows[0], rows[2]]
    by_question = list(filter_rows(rows, result, uid_of=lambda i, row: "k6" if row["q"] == "five" else "x"))
    assert by_question == rows[1:]
    with pytest.raises(ValueError, match="no 'id' field"):
        list(filter_rows(rows, result, uid_of="id"))


def test_pass_rate_table_written_from_prefilter_run(tmp_path):
    store = PassRateStore()
    store.update([GroupOutcome(uid="a", rewards=[1, 0, 0, 0], correct=[True, False, False, False])])
    write_pass_rate_table(store, tmp_path / "t.jsonl")
    assert PassRateStore.from_table(tmp_path / "t.jsonl").latest_pass_rate("a") == 0.25


def g(uid: str, rewards: list[float]) -> GroupOutcome:
    return GroupOutcome(uid=uid, rewards=rewards, correct=[r > 0.5 for r in rewards])


def test_split_informative_drops_equal_reward_groups_in_order():
    groups = [g("all1", [1, 1, 1]), g("mixed", [1, 0, 1]), g("all0", [0, 0, 0]), g("single", [1]),
              g("noise", [0.3, 0.1 + 0.2]), g("format", [1.0, 0.9])]
    kept, dropped = split_informative(groups)
    assert [x.uid for x in kept] == ["mixed", "format"]
    assert [x.uid for x in dropped] == ["all1", "all0", "single", "noise"]
    assert dynamic_dropped_frac(kept, dropped) == pytest.approx(4 / 6)
    assert dynamic_dropped_frac([], []) == 0.0
    assert dynamic_sampling_metrics(3, 1, rounds=2) == {
        "curriculum/dynamic_dropped_frac": 0.25, "curriculum/dynamic_extra_rounds": 2.0}
    kept_strict, _ = split_informative(groups, atol=0.2)
    assert [x.uid for x in kept_strict] == ["mixed"]


class Scored:
    """A stand-in for the GRPO loop's own group object."""

    def __init__(self, outcome: GroupOutcome) -> None:
        self.outcome = outcome


def test_split_informative_returns_the_callers_items_given_outcome_of():
    items = [Scored(g("a", [1, 1])), Scored(g("b", [1, 0])), Scored(g("c", [0, 0]))]
    kept, dropped = split_informative(items, outcome_of=lambda s: s.outcome)
    assert kept == [items[1]] and dropped == [items[0], items[2]]  # the same objects, in order
    assert split_informative(items, 0.5, outcome_of=lambda s: s.outcome) == (kept, dropped)
    assert split_informative(iter([])) == ([], [])
    with pytest.raises(TypeError, match="outcome_of"):
        split_informative(items)  # type: ignore[arg-type]  # on purpose: items that are no GroupOutcome


def test_fill_batch_takes_kept_first_then_dropped():
    assert fill_batch(["k1", "k2"], ["d1", "d2", "d3"], 4) == ["k1", "k2", "d1", "d2"]
    assert fill_batch([1, 2, 3], [9], 2) == [1, 2]
    assert fill_batch([], ["d1"], 3) == ["d1"]  # only as many as were scored
    assert fill_batch(["k"], ["d"], 0) == []
    kept = [Scored(g("a", [1, 0]))]
    assert fill_batch(kept, [], 1)[0] is kept[0]
    with pytest.raises(ValueError, match="want"):
        fill_batch([], [], -1)


def test_dynamic_sampling_metrics_count_any_items():
    assert dynamic_sampling_metrics(["x"], [Scored(g("a", [1, 1]))] * 3, 0) == {
        "curriculum/dynamic_dropped_frac": 0.75, "curriculum/dynamic_extra_rounds": 0.0}
    assert dynamic_sampling_metrics([], [], 0)["curriculum/dynamic_dropped_frac"] == 0.0
    with pytest.raises(ValueError, match="rounds"):
        dynamic_sampling_metrics(1, 1, -1)


@pytest.mark.parametrize("max_rounds", [0, 1, 3])
def test_refill_loop_as_the_grpo_loop_runs_it(max_rounds):
    """The loop of curricula.dynamic's docstring, over a real curriculum and a simulated policy."""
    uids = make_uids(60)
    true_rates = np.where(np.arange(60) % 3 == 0, 0.5, np.where(np.arange(60) % 3 == 1, 0.0, 1.0))
    cur = UniformCurriculum(uids, seed=0)
    sim = np.random.default_rng(0)
    want = 10

    def score(idx):
        return [Scored(o) for o in simulate_outcomes(uids, idx, true_rates, sim, group_size=4)]

    def outcome(s):
        return s.outcome

    scored = score(cur.next_batch(want))
    kept, dropped = split_informative(scored, outcome_of=outcome)
    seen, rounds = list(scored), 0
    while len(kept) < want and rounds < max_rounds:
        rounds += 1
        more = score(cur.next_batch(want - len(kept), refill=True))
        seen += more
        k, d = split_informative(more, outcome_of=outcome)
        kept += k
        dropped += d
    batch = fill_batch(kept, dropped, want)
    metrics = dynamic_sampling_metrics(kept, dropped, rounds)
    cur.observe([outcome(s) for s in seen])

    assert len(batch) == want and len(seen) == len(kept) + len(dropped)
    assert batch[:min(len(kept), want)] == kept[:want]  # informative groups first
    assert rounds == max_rounds  # two thirds of the prompts always give equal rewards: never enough
    assert metrics["curriculum/dynamic_extra_rounds"] == float(max_rounds)
    assert metrics["curriculum/dynamic_dropped_frac"] == pytest.approx(len(dropped) / len(seen))
    assert 0.0 < metrics["curriculum/dynamic_dropped_frac"] < 1.0
    assert len(cur.store) == len({s.outcome.uid for s in seen})  # every scored group was observed
