"""Asynchronous GRPO's lookahead with held-out evaluation, in-process (tests/loop/harness.py).

With ``grpo.async.max_staleness=2`` step k + 1 is generated and scored on a background thread while
step k trains; checkpoints (every 2 steps) and the last step force a sync, so over 4 steps the engines
hold versions 0, 2, 2, 4 and the samples trained lag by 0, 1, 2, 1.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import REPRODUCED, Crash, Run, Script
from rewards import RewardPool

ASYNC = ("grpo.async.max_staleness=2",)
EVAL = ("grpo.eval_every=1", "grpo.eval_prompts=8", "grpo.eval_samples=2")


def test_samples_lag_by_at_most_max_staleness_and_syncs_are_skipped(pool: RewardPool, tmp_path: Path) -> None:
    run = Run(pool, tmp_path / "run", *ASYNC).go()
    rows = run.metrics()
    assert [r["weights/version"] for r in rows] == [1, 2, 3, 4]
    assert [r["weights/engine_version"] for r in rows] == [0, 2, 2, 4]
    assert [r["weights/staleness"] for r in rows] == [0, 1, 2, 1]
    assert [r["sync/bytes"] > 0 for r in rows] == [False, True, False, True]
    # Step k + 1's batch was generated while step k trained (the lookahead thread's calls carry
    # the step they work for).
    assert [st for st, _ in run.engines.calls] == [1, 2, 3, 4]


def test_evaluation_loses_none_of_the_lookahead_s_reward_counters(pool: RewardPool, tmp_path: Path) -> None:
    """Held-out evaluation scores between a step's lookahead batch and the next step's line: it
    counts in a tally of its own, so every step's ``reward/*`` counters hold exactly its training
    samples (the lookahead's included) and never the evaluation's."""
    run = Run(pool, tmp_path / "run", *ASYNC, *EVAL).go()
    rows = run.metrics()
    assert all("eval/pass_rate" in r for r in rows)
    assert [r["reward/samples"] for r in rows] == [8 * 4] * 4


def test_a_run_lost_mid_training_resumes_from_the_batch_in_flight(pool: RewardPool, tmp_path: Path) -> None:
    """Lost as step 3 trains (step 4's batch is then in flight; step 3's came from the step-2
    checkpoint): the resumed run trains the same samples and reproduces the uninterrupted metrics."""
    reference = Run(pool, tmp_path / "reference", *ASYNC, *EVAL).go()
    run = Run(pool, tmp_path / "run", *ASYNC, *EVAL, script=Script({("train", 3): Crash()}))
    with pytest.raises(Crash):
        run.go()
    assert run.checkpoint_step() == 2
    again = Run(pool, run.run_dir, *ASYNC, *EVAL, resume=True).go()
    # The pool's counters of the batch in flight are not checkpointed (they were counted before
    # the loss): step 3's reward/samples reads 0 after the resume.
    keys = (*(k for k in REPRODUCED if k != "reward/samples"), "weights/engine_version", "eval/pass_rate")
    assert again.steps() == [1, 2, 3, 4]
    for ref, got in zip(reference.metrics(), again.metrics(), strict=True):
        assert {k: got[k] for k in keys} == pytest.approx({k: ref[k] for k in keys}), ref["step"]
    # Step 3's batch was not generated again (it came from the checkpoint): the first generation is
    # step 4's lookahead, while step 3 trains.
    assert again.engines.calls[0][0] == 4


def test_engines_sleep_only_when_they_share_the_learners_devices(pool: RewardPool, tmp_path: Path) -> None:
    """On GPU, co-located engines sleep while the learners train (they hand the device over); engines
    on devices of their own never do: asynchronous GRPO has them generate the next batch meanwhile,
    and vLLM's sleep would abort that generation."""
    colocated = Run(pool, tmp_path / "colocated", "cluster.device=gpu").go()
    assert colocated.engines.sleeps == [1, 2, 3, 4]
    separate = Run(pool, tmp_path / "separate", "cluster.device=gpu", "cluster.colocate=false",
                   "cluster.rollout_devices=1", *ASYNC).go()
    assert separate.engines.sleeps == []


def test_co_located_gpu_learners_hold_their_state_only_while_they_train(pool: RewardPool, tmp_path: Path) -> None:
    """The engines sleep, the learners take their state back, train, publish the weights while they
    still hold the device (a CUDA IPC sync hands the engines their GPU tensors), then hand it over
    and the engines wake; the seconds of each move are in the step's line."""
    run = Run(pool, tmp_path / "gpu", "cluster.device=gpu").go()
    step = [what for what, st in run.ctx.events if st == 2]
    assert step == ["sleep", "reload", "train", "train", "sync", "offload", "wake"]
    assert all(r["time/offload_s"] == 0.5 and r["time/reload_s"] == 0.25 for r in run.metrics())
    kept = Run(pool, tmp_path / "kept", "cluster.device=gpu", "learner.offload_states=false").go()
    assert [what for what, st in kept.ctx.events if st == 2] == ["sleep", "train", "train", "sync", "wake"]
    cpu = Run(pool, tmp_path / "cpu").go()
    assert [what for what, st in cpu.ctx.events if st == 2] == ["train", "train", "sync"]
    assert "time/offload_s" not in cpu.metrics()[0]


def test_a_resumed_co_located_run_syncs_the_checkpoint_with_the_learners_on_the_device(pool: RewardPool,
                                                                                        tmp_path: Path) -> None:
    """The learners are offloaded from the moment the engines are built; a resume's sync of the
    checkpoint into the engines puts the engines to sleep and takes the learners back onto the
    device first, as for training (a CUDA IPC sync reads their GPU tensors), then hands the device
    to the engines again."""
    gpu = ("cluster.device=gpu", "checkpoint.every=2")
    with pytest.raises(Crash):
        Run(pool, tmp_path / "run", *gpu, script=Script({("sync", 3): Crash()})).go()
    again = Run(pool, tmp_path / "run", *gpu, resume=True)
    again.go()
    assert [what for what, _ in again.ctx.events][:5] == ["sleep", "reload", "sync", "offload", "wake"]
