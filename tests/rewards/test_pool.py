"""RewardPool: killable workers, per-sample timeouts, crash recovery, metrics, hostile inputs."""

from __future__ import annotations

import time

import pytest

from rewards import RewardError, RewardInput, RewardPool, build_reward
from rewards.sandbox import processes_by_uid

MODULES = ["helper_rewards"]


def inp(completion: str, reference: object = None, **metadata: object) -> RewardInput:
    return RewardInput(prompt="detailed thinking on", completion=completion, reference=reference, metadata=dict(metadata))


@pytest.fixture(scope="module")
def math_pool():
    config = {"components": {"math": 1.0, "format": 0.1}, "accuracy": "math"}
    with RewardPool(config, num_workers=2, timeout_s=5.0) as pool:
        yield pool


def test_pool_matches_in_process_scores_in_order(math_pool: RewardPool) -> None:
    math_pool.stats_and_reset()  # whatever earlier tests on this pool left
    batch = [inp(f"<think>t</think> \\boxed{{{i}}}", str(i % 4)) for i in range(40)]
    outs = math_pool.score_batch(batch)
    assert len(math_pool._stats.latencies) == 40  # one latency per scored sample
    expected = build_reward({"components": {"math": 1.0, "format": 0.1}}).score_batch(batch)
    assert [(o.score, o.correct) for o in outs] == [(e.score, e.correct) for e in expected]
    assert [o.correct for o in outs] == [i < 4 for i in range(40)]
    stats = math_pool.stats_and_reset()
    assert stats["reward/samples"] == 40 and stats["reward/timeouts"] == 0 and stats["reward/errors"] == 0
    assert stats["reward/math/mean"] == pytest.approx(0.1) and stats["reward/format/mean"] == 1.0
    assert math_pool.stats_and_reset()["reward/samples"] == 0  # reset


def test_each_tally_keeps_its_own_counts(math_pool: RewardPool) -> None:
    """An evaluation scored into its own tally between a training batch and the training step's
    read of the counters changes neither: resetting one tally leaves the other's counts."""
    math_pool.stats_and_reset()
    math_pool.score_batch([inp("\\boxed{1}", "1")] * 3)
    math_pool.score_batch([inp("\\boxed{2}", "1")] * 5, tally="eval")
    assert math_pool.stats_and_reset("eval")["reward/samples"] == 5
    math_pool.score_batch([inp("\\boxed{1}", "1")] * 2)
    train = math_pool.stats_and_reset()
    assert train["reward/samples"] == 5 and train["reward/math/mean"] == 1.0
    assert math_pool.stats_and_reset("eval")["reward/samples"] == 0


def test_pool_empty_batch_and_single_score(math_pool: RewardPool) -> None:
    assert math_pool.score_batch([]) == []
    assert math_pool.score(inp("<think>a</think>\\boxed{2}", "2")).correct


HOSTILE = [
    "\\boxed{10^10^10^10}",
    "The answer is 9**9**9**9**9",
    "\x00" * 1000 + "\\boxed{1}",
    "\udcff\udcfe \\boxed{1}",
    "x" * 1_000_000,
    "\\boxed{" + "\\frac{" * 3000,
    "",
]


def test_pool_survives_hostile_math_inputs(math_pool: RewardPool) -> None:
    batch = [inp(c, "1") for c in HOSTILE] + [inp("\\boxed{1}", ref) for ref in (None, {"x": 1}, [[1]], 1)]
    outs = math_pool.score_batch(batch)
    assert len(outs) == len(batch)
    assert [o.correct for o in outs] == [False, False, True, True, False, False, False, False, False, False, True]
    assert all(not o.timed_out for o in outs)


@pytest.mark.parametrize("reward", ["t_sleep", "t_c_hang"])
def test_hanging_reward_is_bounded_by_the_timeout(reward: str) -> None:
    config = {"components": {reward: 1.0}, "modules": MODULES}
    seen: list[float] = []  # what a metrics histogram receives (``on_latency``)
    with RewardPool(config, num_workers=2, timeout_s=1.0, batch_size=4, on_latency=seen.append) as pool:
        batch = [inp("ok")] * 3 + [inp("hang")] + [inp("ok")] * 6
        start = time.monotonic()
        outs = pool.score_batch(batch)
        # The hanging sample would take 1000 s (t_sleep) or hours (t_c_hang) without the 1 s timeout.
        assert time.monotonic() - start < 300
        assert [o.timed_out for o in outs] == [i == 3 for i in range(10)]
        assert outs[3].score == 0.0 and "timed out" in (outs[3].error or "")
        assert all(o.score == 1.0 for i, o in enumerate(outs) if i != 3)
        stats = pool.stats_and_reset()
        assert stats["reward/timeouts"] == 1 and stats["reward/worker_restarts"] >= 1
        assert stats["reward/samples"] == 10
        assert 1.0 <= stats["reward/latency_max_s"] < 300  # the timed-out sample, cut at its deadline
        assert len(seen) == 10 and max(seen) == stats["reward/latency_max_s"]
        assert all(o.score == 1.0 for o in pool.score_batch([inp("ok")] * 4))  # replacements work


def test_latency_stats_come_from_the_scored_samples() -> None:
    """5 of 8 samples sleep 0.3 s in the reward: the median latency and the maximum show it."""
    config = {"components": {"t_slow": 1.0}, "modules": MODULES}
    with RewardPool(config, num_workers=2, timeout_s=60.0, spare_workers=0) as pool:
        outs = pool.score_batch([inp("slow")] * 5 + [inp("fast")] * 3)
        assert [o.score for o in outs] == [1.0] * 8
        stats = pool.stats_and_reset()
    assert stats["reward/samples"] == 8
    # Nearest-rank p50 of 8 sorted latencies is the 4th: a slow one, since only 3 are fast.
    assert stats["reward/latency_p50_s"] >= 0.3 and stats["reward/latency_max_s"] >= 0.3
    assert stats["reward/t_slow/mean"] == 1.0


def test_worker_death_costs_only_its_sample() -> None:
    config = {"components": {"t_exit": 1.0}, "modules": MODULES}
    with RewardPool(config, num_workers=2, timeout_s=5.0) as pool:
        outs = pool.score_batch([inp("fine"), inp("die"), inp("fine"), inp("die"), inp("fine")])
        assert [o.score for o in outs] == [1.0, 0.0, 1.0, 0.0, 1.0]
        assert "worker died" in (outs[1].error or "") and not outs[1].timed_out
        stats = pool.stats_and_reset()
        assert stats["reward/errors"] == 2 and stats["reward/worker_restarts"] == 2


def test_user_errors_follow_the_policy() -> None:
    config = {"components": {"t_raise": 1.0, "t_len": 1.0}, "modules": MODULES}
    with RewardPool(config, num_workers=1, timeout_s=5.0, on_error=-1.0) as pool:
        out = pool.score(inp("abcd"))
        assert out.score == pytest.approx(-1.0 + 0.04) and "exploded" in (out.error or "")
        assert pool.stats_and_reset()["reward/errors"] == 1
    with RewardPool(config, num_workers=1, timeout_s=5.0, on_error="raise") as pool, \
            pytest.raises(RewardError, match="exploded"):
        pool.score_batch([inp("x")])


def test_async_user_reward_in_pool() -> None:
    config = {"components": {"t_async": 1.0}, "modules": MODULES}
    with RewardPool(config, num_workers=1, timeout_s=5.0) as pool:
        assert [o.score for o in pool.score_batch([inp("yes"), inp("no")])] == [1.0, 0.0]


def test_code_reward_escapes_in_pool_are_contained() -> None:
    tests = ["assert add(1, 2) == 3"]
    bombs = [
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        "while True:\n    pass\n",
        "x = bytearray(10**11)\n",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
    ]
    batch = [inp(b, tests) for b in bombs] + [inp("def add(a, b):\n    return a + b\n", tests)]
    config = {"components": {"code": 1.0}, "options": {"code": {"timeout_s": 2.0}}}
    with RewardPool(config, num_workers=2, timeout_s=15.0) as pool:
        outs = pool.score_batch(batch)
    assert [o.score for o in outs] == [0.0, 0.0, 0.0, 0.0, 1.0]
    assert outs[1].timed_out
    assert not wait_for_no_sandbox_processes(), "sandbox processes outlived the pool"


def sandbox_processes() -> list[int]:
    return [p for uid, pids in processes_by_uid().items() if 64000 <= uid < 64064 for p in pids]


def wait_for_no_sandbox_processes(limit_s: float = 120.0) -> list[int]:
    """Leftover sandbox processes once none remain or ``limit_s`` passed (killed processes take a
    moment to be reaped, longer on a loaded machine)."""
    deadline = time.monotonic() + limit_s
    while sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    return sandbox_processes()


def test_config_must_be_plain_data() -> None:
    with pytest.raises(RewardError, match="picklable"):
        RewardPool({"components": {"t_len": 1.0}, "options": {"t_len": {"scale": lambda: 1}}}, num_workers=1)


@pytest.mark.parametrize(
    "config, kwargs",
    [
        ({"components": {"nope": 1.0}}, {}),
        ("math", {"num_workers": 0}),
        ("math", {"timeout_s": 0}),
        ("math", {"on_error": "sometimes"}),
    ],
)
def test_bad_pool_config_raises_before_spawning(config: object, kwargs: dict) -> None:
    with pytest.raises(RewardError):
        RewardPool(config, **kwargs)  # type: ignore[arg-type]


def test_close_stops_workers_and_rejects_use() -> None:
    pool = RewardPool("format", num_workers=2, timeout_s=5.0)
    procs = [w.proc for w in pool._workers]
    assert all(p.is_alive() for p in procs)
    pool.close()
    assert not any(p.is_alive() for p in procs)
    with pytest.raises(RewardError, match="closed"):
        pool.score(inp("x"))
    pool.close()  # idempotent
