"""Preemption at every phase, failures that stop the run, and resume, in-process (tests/loop/harness.py).

Each run is compared with one uninterrupted run of the same settings: whatever stopped it, what was
checkpointed must let ``resume`` reproduce the uninterrupted metrics exactly. SIGTERM is a real
signal to this process, sent by the run's injected driver fault (``driver:sigterm@PHASE:STEP``) and
caught by the loop's ``StopRequested``, as in a launched run; failures are the exceptions the real
actor groups raise.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import REPRODUCED, Crash, Run, Script
from rewards import RewardPool
from rlplat.distributed.waits import ActorFailure, PhaseTimeout
from rlplat.rollout.group import RolloutRestartLimit
from rlplat.runtime.scorer import RewardRestartLimit
from rlplat.runtime.signals import Preempted

# Checkpoints only at the end (and where a stop or failure writes one), so what each stop saves shows.
RARE = "checkpoint.every=100"


@pytest.fixture(scope="module")
def reference(pool: RewardPool, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The uninterrupted run."""
    return Run(pool, tmp_path_factory.mktemp("reference") / "run", RARE).go()


def assert_reproduces(reference: Run, resumed: Run) -> None:
    """The resumed run's metrics equal the uninterrupted run's, step for step."""
    ref, got = reference.metrics(), resumed.metrics()
    assert [r["step"] for r in got] == [r["step"] for r in ref]
    for a, b in zip(ref, got, strict=True):
        assert {k: b[k] for k in REPRODUCED} == pytest.approx({k: a[k] for k in REPRODUCED}), a["step"]


def resumed(pool: RewardPool, run: Run) -> Run:
    """``run`` resumed to its end with no faults."""
    return Run(pool, run.run_dir, RARE, resume=True).go()


@pytest.mark.parametrize(("phase", "logged"), [
    ("generate", [1, 2]),  # abandoned at once: step 2's state is checkpointed
    ("score", [1, 2]),
    ("train", [1, 2, 3]),  # training finishes its step within the grace, which is then checkpointed
    ("sync", [1, 2, 3]),  # the sync is not abandoned: the step ends, is logged and checkpointed
])
def test_sigterm_at_each_phase_stops_with_the_last_consistent_state(pool: RewardPool, reference: Run, tmp_path: Path,
                                                                    phase: str, logged: list[int]) -> None:
    run = Run(pool, tmp_path / "run", RARE, f"faults.inject=[driver:sigterm@{phase}:3]")
    with pytest.raises(Preempted, match=f"resume={run.run_dir}"):
        run.go()
    assert run.steps() == logged and run.checkpoint_step() == logged[-1]
    assert_reproduces(reference, resumed(pool, run))


def test_sigterm_when_training_outlasts_the_grace_keeps_the_last_checkpoint(pool: RewardPool, reference: Run,
                                                                            tmp_path: Path) -> None:
    """Training abandoned mid-update (grace 0): its state matches no checkpoint, so none is written
    and the newest complete one (step 2) is the resume point."""
    run = Run(pool, tmp_path / "run", "checkpoint.every=2", "faults.preempt_grace_s=0",
              "faults.inject=[driver:sigterm@train:3]")
    with pytest.raises(Preempted, match=r"complete checkpoint \(step 2\) is the resume point"):
        run.go()
    assert run.steps() == [1, 2] and run.checkpoint_step() == 2
    assert_reproduces(reference, resumed(pool, run))


@pytest.mark.parametrize(("phase", "error", "logged", "saved"), [
    ("generate", RolloutRestartLimit("engines failed past the bound"), [1, 2], 2),
    ("score", RewardRestartLimit("scorer failed past the bound"), [1, 2], 2),
    ("train", ActorFailure("train", "learner rank 1", 1, RuntimeError("frozen")), [1, 2], None),
    ("train", PhaseTimeout("train", ["learner rank 0"], 1.0), [1, 2], None),
    # Step 3 trained before its sync failed: its line is logged and its state checkpointed.
    ("sync", RolloutRestartLimit("engines failed to load past the bound"), [1, 2, 3], 3),
])
def test_a_failure_checkpoints_what_is_consistent_and_stops(pool: RewardPool, reference: Run, tmp_path: Path,
                                                            phase: str, error: Exception, logged: list[int],
                                                            saved: int | None) -> None:
    """Engine and scorer failures leave the learners consistent: the last finished step is saved.
    A learner failure leaves them mid-update: only the periodic checkpoints stay (none here)."""
    run = Run(pool, tmp_path / "run", RARE, script=Script({(phase, 3): error}))
    with pytest.raises(type(error)):
        run.go()
    assert run.steps() == logged and run.checkpoint_step() == saved
    if saved is not None:
        assert_reproduces(reference, resumed(pool, run))


def test_a_lost_machine_resumes_from_the_periodic_checkpoint(pool: RewardPool, reference: Run, tmp_path: Path) -> None:
    """Nothing runs a handler when the machine is lost (``Crash``): the step-2 checkpoint and the
    metrics up to it are what the resume starts from; the steps logged after it are cut back."""
    run = Run(pool, tmp_path / "run", "checkpoint.every=2", script=Script({("sync", 3): Crash()}))
    with pytest.raises(Crash):
        run.go()
    assert run.checkpoint_step() == 2
    assert_reproduces(reference, resumed(pool, run))


def test_restart_counts_dropped_prompts_and_fired_faults_carry_over_a_resume(pool: RewardPool, tmp_path: Path) -> None:
    """The fault log is checkpointed: a resumed run neither replays an injected fault that fired
    nor forgets what failed before."""
    run = Run(pool, tmp_path / "run", RARE, "faults.inject=[driver:sigterm@generate:3]")
    run.records.faults.rollout_restarts = 2
    run.records.faults.dropped_prompts.append("arith:5")
    with pytest.raises(Preempted):
        run.go()
    again = Run(pool, run.run_dir, RARE, "faults.inject=[driver:sigterm@generate:3]", resume=True).go()
    assert again.steps() == [1, 2, 3, 4]  # the SIGTERM of step 3 fired before the checkpoint
    last = again.metrics()[-1]
    assert last["faults/rollout_restarts"] == 2 and last["faults/dropped_prompts"] == 1
    assert again.records.faults.fired == ["driver:sigterm@generate:3"]


def test_a_resumed_run_continues_the_curriculum_where_it_stopped(pool: RewardPool, tmp_path: Path) -> None:
    """Progressive batching with dynamic sampling: the checkpoint holds the curriculum's state (its
    RNG, position and pass-rate store), so the resumed run draws, refills and reports as the
    uninterrupted one did."""
    curriculum = ("curriculum.name=progressive", "curriculum.dynamic_sampling=true", "curriculum.dynamic_max_rounds=2",
                  "checkpoint.every=2")
    uniform = frozenset(f"arith:{i}" for i in range(0, 64, 2))
    reference = Run(pool, tmp_path / "reference", *curriculum, uniform=uniform).go()
    run = Run(pool, tmp_path / "run", *curriculum, script=Script({("generate", 3): Crash()}), uniform=uniform)
    with pytest.raises(Crash):
        run.go()
    again = Run(pool, run.run_dir, *curriculum, resume=True, uniform=uniform).go()
    keys = [k for k in reference.metrics()[0] if k.startswith("curriculum/")]
    assert "curriculum/dynamic_extra_rounds" in keys and "curriculum/target_center" in keys
    for ref, got in zip(reference.metrics(), again.metrics(), strict=True):
        assert {k: got[k] for k in (*keys, *REPRODUCED)} == pytest.approx({k: ref[k] for k in (*keys, *REPRODUCED)})
    assert again.loop.curriculum.state_dict() == reference.loop.curriculum.state_dict()
