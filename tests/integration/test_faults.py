"""Fault injection on real processes: engines killed or frozen, a learner killed, SIGTERM, a hanging
reward. Each test starts the launcher, injects the fault by PID, and checks what the run did."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from launch_helpers import assert_reproduces, finish, placement, plugin_env, resume, start, wait_for
from rlplat.checkpoint import latest_checkpoint
from rlplat.metrics import read_metrics

pytestmark = pytest.mark.slow


def wait_for_steps(proc, run_dir: Path, steps: int) -> None:  # type: ignore[no-untyped-def]
    wait_for(proc, run_dir, lambda: len(read_metrics(run_dir / "metrics.jsonl")) >= steps, f"{steps} logged steps")


def wait_for_checkpoint(proc, run_dir: Path, step: int) -> None:  # type: ignore[no-untyped-def]
    wait_for(proc, run_dir, lambda: (latest_checkpoint(run_dir) or (0, None))[0] >= step, f"checkpoint {step}")


def test_killed_engine_is_restarted_and_no_step_is_lost(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start(run_dir, "stages=[grpo]", "grpo.total_steps=3")
    wait_for_steps(proc, run_dir, 1)
    os.kill(placement(run_dir)["engines"][1]["pid"], signal.SIGKILL)
    rc, err = finish(proc, run_dir)
    assert rc == 0, err[-3000:]
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[-1]["faults/rollout_restarts"] == 1
    assert [r["weights/version"] for r in rows] == [1, 2, 3]


def test_frozen_engine_misses_its_deadline_and_is_replaced(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start(run_dir, "stages=[grpo]", "grpo.total_steps=3", "timeouts.generate_s=20")
    wait_for_steps(proc, run_dir, 1)
    os.kill(placement(run_dir)["engines"][0]["pid"], signal.SIGSTOP)  # alive, but never answers
    rc, err = finish(proc, run_dir)
    assert rc == 0, err[-3000:]
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[-1]["faults/rollout_restarts"] == 1


def test_restart_bound_stops_the_run_with_a_usable_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start(run_dir, "stages=[grpo]", "faults.max_rollout_restarts=0", "checkpoint.every=100",
                 "timeouts.generate_s=15")
    wait_for_steps(proc, run_dir, 1)
    # Frozen after step 1's sync: step 2's generation is the first call to miss its deadline,
    # so the failure comes before training and the finished step can be checkpointed.
    os.kill(placement(run_dir)["engines"][0]["pid"], signal.SIGSTOP)
    rc, err = finish(proc, run_dir)
    assert rc == 1
    assert "max_rollout_restarts=0" in err and f"resume={run_dir}" in err
    found = latest_checkpoint(run_dir)
    assert found is not None and found[0] == len(read_metrics(run_dir / "metrics.jsonl"))


def test_learner_death_stops_cleanly_and_names_the_rank(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start(run_dir, "stages=[grpo]")
    wait_for_checkpoint(proc, run_dir, 2)
    os.kill(placement(run_dir)["learners"][1]["pid"], signal.SIGKILL)
    rc, err = finish(proc, run_dir)
    assert rc == 1 and "learner rank 1 died" in err and f"resume={run_dir}" in err
    assert latest_checkpoint(run_dir)[0] == 2  # type: ignore[index]


def test_sigterm_checkpoints_then_resume_reproduces_the_run(reference_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    wait_for_steps(proc, run_dir, 1)
    os.kill(proc.pid, signal.SIGTERM)
    rc, err = finish(proc, run_dir)
    assert rc == 143, err[-3000:]
    steps = len(read_metrics(run_dir / "metrics.jsonl"))
    assert latest_checkpoint(run_dir)[0] == steps  # type: ignore[index]
    rc, out = resume(run_dir)
    assert rc == 0, out[-3000:]
    assert_reproduces(reference_run, run_dir)


def test_hanging_reward_is_bounded_by_its_timeout(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = plugin_env()
    proc = start(run_dir, "stages=[grpo]", "grpo.total_steps=2", "reward.components={sometimes_hangs: 1.0}",
                 "reward.modules=[slow_rewards]", "reward.timeout_s=2", env=env)
    rc, err = finish(proc, run_dir)
    assert rc == 0, err[-3000:]
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert len(rows) == 2 and sum(r["reward/timeouts"] for r in rows) > 0
    assert all(r["time/reward_s"] < 60 for r in rows)
