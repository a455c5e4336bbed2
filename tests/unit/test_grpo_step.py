"""The pure pieces of a GRPO step (``rlplat.algo.grpo``) and the one reduction of its statistics
(``rlplat.algo.stats``)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rlplat.algo.grpo import advantages, make_requests, minibatches, request_seed, rollout_metrics, train_sequences
from rlplat.algo.stats import reduce_optimizer_step, reduce_train_step
from rlplat.types import MicroStats, PromptItem, RankStepStats, Sample, ScoredGroup, ScoredSample


def _group(uid: str, prompt: tuple[int, ...], rewards: list[float], version: int = 3) -> ScoredGroup:
    item = PromptItem(uid=uid, index=0, question=uid, text=uid, reference="1")
    samples = tuple(ScoredSample(Sample(tuple(range(10, 10 + i + 1)), "x", tuple([-0.5] * (i + 1)), version,
                                        "length" if i == 0 else "stop"), r, r > 0.5)
                    for i, r in enumerate(rewards))
    return ScoredGroup(item, prompt, samples)


def _seed_in_a_new_process(hash_seed: str) -> int:
    """``request_seed(0, 1, "a", 0)`` computed by a fresh interpreter with Python's string hashing
    salted by ``hash_seed`` (what a resumed run or another Ray worker has)."""
    code = "from rlplat.algo.grpo import request_seed; print(request_seed(0, 1, 'a', 0))"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": hash_seed},
                         capture_output=True, text=True, check=True, timeout=120)
    return int(out.stdout)


def test_request_seeds_are_stable_across_processes_and_distinct() -> None:
    # Two interpreters with different string-hash salts agree with this one: a seed must not depend
    # on ``hash`` (salted per process), or a resumed run would sample differently.
    assert _seed_in_a_new_process("1") == _seed_in_a_new_process("2") == request_seed(0, 1, "a", 0)
    seeds = {request_seed(s, t, u, a) for s in (0, 1) for t in (1, 2) for u in ("a", "b") for a in (0, 1)}
    assert len(seeds) == 16 and all(0 <= x < 2**31 for x in seeds)
    items = [PromptItem(uid=u, index=i, question=u, text=u, reference="") for i, u in enumerate("ab")]
    reqs = make_requests(items, [(1, 2), (3,)], seed=0, step=5, attempt=1)
    assert [(r.uid, r.prompt_token_ids, r.seed) for r in reqs] == [
        ("a", (1, 2), request_seed(0, 5, "a", 1)), ("b", (3,), request_seed(0, 5, "b", 1))]


def test_train_sequences_pair_each_completion_with_its_group_prompt_and_advantage() -> None:
    groups = [_group("p", (1, 2), [1.0, 0.0]), _group("q", (7,), [0.0, 0.0, 1.0])]
    adv = advantages(groups, "dr_grpo")
    assert adv == [[0.5, -0.5], pytest.approx([-1 / 3, -1 / 3, 2 / 3])]
    seqs = train_sequences(groups, adv)
    assert [s.prompt_ids for s in seqs] == [(1, 2), (1, 2), (7,), (7,), (7,)]
    assert [s.completion_ids for s in seqs] == [(10,), (10, 11), (10,), (10, 11), (10, 11, 12)]
    assert [len(s.old_logprobs) for s in seqs] == [1, 2, 1, 2, 3]
    assert [s.advantage for s in seqs] == pytest.approx([0.5, -0.5, -1 / 3, -1 / 3, 2 / 3])


def test_minibatches_partition_a_seeded_shuffle() -> None:
    seqs = train_sequences([_group(str(i), (i,), [0.0, 1.0]) for i in range(6)],
                           [[0.0, 0.0]] * 6)
    batches = minibatches(seqs, 4, seed=0, step=1)
    assert [len(b) for b in batches] == [4, 4, 4]
    assert sorted(id(s) for b in batches for s in b) == sorted(id(s) for s in seqs)
    assert minibatches(seqs, 4, seed=0, step=1) == batches
    assert minibatches(seqs, 4, seed=0, step=2) != batches


def test_rollout_metrics() -> None:
    groups = [_group("p", (1,), [1.0, 0.0]), _group("q", (1,), [0.0, 0.0], version=2)]
    m = rollout_metrics(groups, weights_version=3)
    assert m["reward/mean"] == 0.25 and m["pass_rate"] == 0.25
    assert m["response_length/mean"] == 1.5 and m["response_length/max"] == 2.0 and m["tokens/generated"] == 6.0
    assert m["response/truncated_frac"] == 0.5
    assert m["weights/staleness"] == 1.0  # group q came from version 2 while version 3 trains


def _rank(rows: list[int], values: list[dict[str, float]], grad_norm: float) -> RankStepStats:
    return RankStepStats(tuple(MicroStats(v, r) for v, r in zip(values, rows)), grad_norm)


def test_one_reduction_sums_loss_shares_maxes_maxima_and_weighs_means_by_rows() -> None:
    ranks = [_rank([3, 1], [{"loss/policy": 0.25, "kl": 1.0, "ratio/max": 1.5},
                            {"loss/policy": 0.5, "kl": 5.0, "ratio/max": 3.0}], grad_norm=2.0),
             _rank([4], [{"loss/policy": 0.25, "kl": 0.0, "ratio/max": 1.0}], grad_norm=2.0)]
    out = reduce_optimizer_step(ranks)
    assert out["loss/policy"] == pytest.approx(1.0)  # shares of the global loss add up
    assert out["kl"] == pytest.approx((3 * 1.0 + 1 * 5.0 + 4 * 0.0) / 8)
    assert out["ratio/max"] == 3.0 and out["grad_norm"] == 2.0


def test_a_step_averages_its_optimizer_steps_and_takes_mismatch_from_those_that_measured_it() -> None:
    first = [_rank([2], [{"loss/policy": 1.0, "approx_kl": 0.01, "ratio/max": 2.0, "mismatch/kl": 0.3,
                          "mismatch/ratio_max": 1.5}], 1.0)]
    second = [_rank([2], [{"loss/policy": 3.0, "approx_kl": 0.09, "ratio/max": 1.0}], 3.0)]
    out = reduce_train_step([first, second])
    assert out["loss/policy"] == 2.0 and out["grad_norm"] == 2.0 and out["ratio/max"] == 2.0
    assert out["approx_kl"] == pytest.approx(0.05)
    assert out["mismatch/kl"] == 0.3 and out["mismatch/ratio_max"] == 1.5  # only the first measured it
    third = [_rank([2], [{"loss/policy": 0.0, "mismatch/kl": 0.1, "mismatch/ratio_max": 2.5}], 1.0)]
    both = reduce_train_step([first, third])
    assert both["mismatch/kl"] == pytest.approx(0.2) and both["mismatch/ratio_max"] == 2.5  # "_max": maxima
    assert out["optimizer_steps"] == 2.0


def test_learner_phase_seconds_are_the_slowest_rank_summed_over_optimizer_steps() -> None:
    def step(fb: tuple[float, float], opt: tuple[float, float]) -> list[RankStepStats]:
        return [RankStepStats((MicroStats({"kl": 0.0}, 1),), 1.0, {"forward_backward": f, "optimizer": o})
                for f, o in zip(fb, opt)]

    out = reduce_train_step([step((1.0, 3.0), (0.5, 0.25)), step((2.0, 1.0), (0.1, 0.2))])
    assert out["time/train/forward_backward_s"] == pytest.approx(3.0 + 2.0)
    assert out["time/train/optimizer_s"] == pytest.approx(0.5 + 0.2)
    assert "time/train/forward_backward_s" not in reduce_train_step([[_rank([1], [{"kl": 0.0}], 1.0)]])
