"""Fault injection on real processes: engines killed or frozen, a learner killed, SIGTERM, a hanging
reward. Each test starts the launcher, injects the fault by PID, and checks what the run did."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from launch_helpers import FAST, REPRODUCED, placement, start, wait_for_checkpoint, wait_for_steps
from rlplat.checkpoint import latest_checkpoint
from rlplat.metrics import read_metrics

pytestmark = pytest.mark.slow
PLUGINS = Path(__file__).resolve().parent / "plugins"


def _finish(proc: subprocess.Popen[str], timeout: float = 600) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, err


def _resume(run_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rlplat.launch", f"resume={run_dir}"], capture_output=True,
                          text=True, timeout=600, start_new_session=True)


def test_killed_engine_is_restarted_and_no_step_is_lost(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start(run_dir, "stages=[grpo]", "grpo.total_steps=3")
    wait_for_steps(proc, run_dir, 1)
    os.kill(placement(run_dir)["engines"][1]["pid"], signal.SIGKILL)
    rc, err = _finish(proc)
    assert rc == 0, err[-3000:]
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[-1]["faults/rollout_restarts"] == 1
    assert [r["weights/version"] for r in rows] == [2, 3, 4]


def test_frozen_engine_misses_its_deadline_and_is_replaced(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start(run_dir, "stages=[grpo]", "grpo.total_steps=3", "timeouts.generate_s=20")
    wait_for_steps(proc, run_dir, 1)
    os.kill(placement(run_dir)["engines"][0]["pid"], signal.SIGSTOP)  # alive, but never answers
    rc, err = _finish(proc)
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
    rc, err = _finish(proc)
    assert rc == 1
    assert "max_rollout_restarts=0" in err and f"resume={run_dir}" in err
    found = latest_checkpoint(run_dir)
    assert found is not None and found[0] == len(read_metrics(run_dir / "metrics.jsonl"))


def test_learner_death_stops_cleanly_and_names_the_rank(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start(run_dir, "stages=[grpo]")
    wait_for_checkpoint(proc, run_dir, 2)
    os.kill(placement(run_dir)["learners"][1]["pid"], signal.SIGKILL)
    rc, err = _finish(proc)
    assert rc == 1 and "learner rank 1 died" in err and f"resume={run_dir}" in err
    assert latest_checkpoint(run_dir)[0] == 2  # type: ignore[index]


def test_sigterm_checkpoints_then_resume_reproduces_the_run(reference_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    wait_for_steps(proc, run_dir, 1)
    os.kill(proc.pid, signal.SIGTERM)
    rc, err = _finish(proc)
    assert rc == 143, err[-3000:]
    steps = len(read_metrics(run_dir / "metrics.jsonl"))
    assert latest_checkpoint(run_dir)[0] == steps  # type: ignore[index]
    out = _resume(run_dir)
    assert out.returncode == 0, out.stderr[-3000:]
    resumed, reference = read_metrics(run_dir / "metrics.jsonl"), read_metrics(reference_run / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    for ref, got in zip(reference, resumed):
        for key in REPRODUCED:
            assert got[key] == pytest.approx(ref[key], rel=1e-6, abs=1e-9), (ref["step"], key)


def test_hanging_reward_is_bounded_by_its_timeout(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PLUGINS), os.environ.get("PYTHONPATH")]))}
    proc = start(run_dir, "stages=[grpo]", "grpo.total_steps=2", "reward.components={sometimes_hangs: 1.0}",
                 "reward.modules=[slow_rewards]", "reward.timeout_s=2", env=env)
    rc, err = _finish(proc)
    assert rc == 0, err[-3000:]
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert len(rows) == 2 and sum(r["reward/timeouts"] for r in rows) > 0
    assert all(r["time/reward_s"] < 60 for r in rows)
