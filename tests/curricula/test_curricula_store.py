"""PassRateStore: updates, latest vs cumulative rates, retirement window, table files, state."""

import json

import pytest

from curricula import GroupOutcome, PassRateStore, PromptStats


def group(uid: str, correct: list[bool]) -> GroupOutcome:
    return GroupOutcome(uid=uid, rewards=[float(c) for c in correct], correct=correct)


def stats_of(store: PassRateStore, uid: str) -> PromptStats:
    """The prompt's statistics, which the test expects to exist."""
    stats = store.get(uid)
    assert stats is not None, f"no statistics for {uid!r}"
    return stats


def test_update_accumulates_and_latest_follows_last_group():
    store = PassRateStore()
    store.add("a", 8, 2, training=False)  # prefilter: 2/8
    assert store.latest_pass_rate("a") == pytest.approx(0.25)
    store.update([group("a", [True, True, True, False]), group("b", [False, False])])
    a = stats_of(store, "a")
    assert (a.attempts, a.successes, a.groups) == (12, 5, 1)
    assert a.pass_rate == pytest.approx(5 / 12)
    assert a.latest_pass_rate == pytest.approx(0.75)  # the policy's group, not the offline rate
    assert store.latest_pass_rate("b") == 0.0
    assert store.latest_pass_rate("missing") is None and "missing" not in store
    assert len(store) == 2 and list(store) == ["a", "b"]


def test_offline_evidence_never_enters_recent_window():
    store = PassRateStore()
    store.add("a", 100, 100, training=False)
    assert stats_of(store, "a").recent == () and stats_of(store, "a").recent_pass_rate(1) is None


def test_recent_pass_rate_uses_smallest_suffix_reaching_min_attempts():
    stats = PromptStats(attempts=24, successes=16, groups=3, recent=((8, 0), (8, 8), (8, 8)))
    assert stats.recent_pass_rate(8) == 1.0
    assert stats.recent_pass_rate(16) == 1.0
    assert stats.recent_pass_rate(17) == pytest.approx(16 / 24)
    assert stats.recent_pass_rate(25) is None


def test_history_is_bounded():
    store = PassRateStore(history=3)
    for k in range(5):
        store.add("a", 4, k % 5, training=True)
    assert stats_of(store, "a").recent == ((4, 2), (4, 3), (4, 4))
    assert stats_of(store, "a").groups == 5


def test_invalid_counts_raise():
    store = PassRateStore()
    with pytest.raises(ValueError, match="successes <= attempts"):
        store.add("a", 4, 5)
    with pytest.raises(ValueError, match="at least one sample"):
        store.add("a", 0, 0, training=True)
    with pytest.raises(ValueError, match="correct flags"):
        GroupOutcome(uid="a", rewards=[1.0, 0.0], correct=[True])


def test_table_round_trip_and_duplicate_uids_summed(tmp_path):
    path = tmp_path / "rates.jsonl"
    path.write_text('{"uid": "a", "attempts": 8, "successes": 3}\n\n'
                    '{"uid": 7, "attempts": 8, "successes": 8, "note": "ignored"}\n'
                    '{"uid": "a", "attempts": 8, "successes": 1}\n')
    store = PassRateStore.from_table(path)
    assert store.get("a") == PromptStats(attempts=16, successes=4)
    assert store.latest_pass_rate("7") == 1.0  # integer uids become strings
    out = tmp_path / "sub" / "out.jsonl"
    store.to_table(out)
    again = PassRateStore.from_table(out)
    assert again == store
    first = json.loads(out.read_text().splitlines()[0])
    assert first == {"uid": "a", "attempts": 16, "successes": 4, "pass_rate": 0.25}


@pytest.mark.parametrize("line, match", [
    ('{"uid": "a", "attempts": 8}', "needs keys"),
    ('{"uid": "a", "attempts": 8, "successes": 9}', "successes <= attempts"),
    ('{"uid": "a", "attempts": 8.5, "successes": 1}', "attempts must be an integer"),
    ("not json", "not a JSON object"),
])
def test_bad_table_names_file_and_line(tmp_path, line, match):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"uid": "ok", "attempts": 1, "successes": 1}\n' + line + "\n")
    with pytest.raises(ValueError, match=match) as err:
        PassRateStore.from_table(path)
    assert f"{path}:2" in str(err.value)


def test_state_dict_is_json_and_round_trips():
    store = PassRateStore(history=4)
    store.add("a", 8, 5, training=False)
    store.update([group("a", [True, False]), group("b", [True])])
    state = json.loads(json.dumps(store.state_dict()))
    restored = PassRateStore.from_state_dict(state)
    assert restored == store and restored.history == 4
    assert stats_of(restored, "a").recent == ((2, 1),)
    with pytest.raises(ValueError, match="version"):
        PassRateStore().load_state_dict({**state, "version": 99})
