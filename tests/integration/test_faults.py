"""Faults injected at a named actor, phase and step (``faults.inject``), on the real actors.

Every run starts GRPO from the reference run's warm-started model with the reference's settings, so
its metrics must equal the reference's step for step: a replaced engine regenerates with the same
seeds, a replaced reward scorer rescores the same samples, and a resumed run continues from a
checkpoint that lost nothing. No test races a signal against the run: each fault fires exactly where
the spec says. What the loop does about each failure and each preemption, phase by phase, is tested
in-process (tests/loop); here the real actors fail, are noticed by their heartbeats and are replaced,
and a real SIGTERM ends a launched run.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from curricula import build_curriculum
from launch_helpers import assert_reproduces, launch, plugin_env, resume
from rlplat.checkpoint import latest_checkpoint, load_run_state
from rlplat.metrics import read_metrics

pytestmark = pytest.mark.slow
HEARTBEAT_S = 5.0
# A frozen actor is declared failed within the heartbeat timeout plus 5 s (a probe interval and the
# machine's scheduling slack), not at the phase deadline.
DETECT_BOUND_S = HEARTBEAT_S + 5.0
MISMATCH_KEYS = ("mismatch/ratio_mean", "mismatch/ratio_max", "mismatch/kl", "mismatch/clipped_frac")


def _grpo(reference_run: Path, run_dir: Path, *inject: str, extra: tuple[str, ...] = (),
          env: dict[str, str] | None = None) -> tuple[int, str]:
    args = [f"model.path={reference_run / 'warmstart_model'}", "stages=[grpo]", f"faults.heartbeat_s={HEARTBEAT_S}",
            f"faults.inject=[{','.join(inject)}]", *extra]
    return launch(run_dir, *args, env=env)


def _history(run_dir: Path) -> list[dict[str, object]]:
    found = latest_checkpoint(run_dir)
    assert found is not None
    return list(load_run_state(found[1]).faults["history"])


def _last(run_dir: Path, key: str) -> float:
    return float(read_metrics(run_dir / "metrics.jsonl")[-1][key])


def test_replaced_actors_and_a_lost_machine_lose_nothing(reference_run: Path, tmp_path: Path) -> None:
    """In step 2 an engine freezes in generation, the reward scorer freezes while scoring and the
    other engine exits while loading weights: each is replaced, and step 2 is checkpointed with the
    events. In step 4 the machine is lost (SIGKILL of the driver's process group: the driver, Ray
    and every actor) during the sync, after training: steps 3 and 4 were not saved. The resumed run
    redoes them, finishes, and the metrics equal the uninterrupted run's. (SIGTERM ending a launched
    run with exit 143 is test_dashboard_browser's; the loop's side of every stop is tests/loop's.)"""
    run = tmp_path / "run"
    rc, out = _grpo(reference_run, run, "engine0:freeze@generate:2", "reward:freeze@score:2", "engine1:exit@sync:2",
                    "driver:kill@sync:4")
    assert rc == -signal.SIGKILL, out[-3000:]
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3]
    assert latest_checkpoint(run)[0] == 2  # type: ignore[index]
    frozen, scorer, dead = _history(run)
    assert (frozen["step"], frozen["phase"], frozen["actor"]) == (2, "generate", "rollout worker 0")
    assert (scorer["step"], scorer["actor"]) == (2, "reward scorer")
    assert (dead["step"], dead["phase"], dead["actor"]) == (2, "sync", "rollout worker 1")
    for event in (frozen, scorer):
        # Noticed by the heartbeat (the only path that says "stopped answering"), long before the
        # phase deadlines.
        assert "stopped answering" in str(event["what"])
        assert float(event["detect_s"]) < DETECT_BOUND_S  # type: ignore[arg-type]
    rc, out = resume(run, "faults.inject=[]")
    assert rc == 0, out[-3000:]
    assert_reproduces(reference_run, run)  # same seeds regenerated, same samples rescored
    # The restart counts carried over the resume.
    assert _last(run, "faults/rollout_restarts") == 2 and _last(run, "faults/reward_restarts") == 1


def test_a_crashing_prompt_a_hanging_reward_and_fp8_engines_that_fall_back_in_one_run(reference_run: Path,
                                                                                       tmp_path: Path) -> None:
    """A prompt that kills every engine given it is dropped (not charged to the restart bound) and
    replaced; a reward that hangs is cut at ``reward.timeout_s`` and counted. Two prompts a step,
    one per engine, and ``faults.prompt_retries=0``: the prompt fails alone and is dropped at its
    first failure, so one engine is replaced (how a failed chunk is retried whole, then prompt by
    prompt, is ``PromptBudget.retry``'s, tested in tests/unit/test_fault_plan.py). The same run's engines
    are FP8 (on CPU: FP8-rounded weights, emulated), its PPO ratio is corrected by TIS with the
    learners' own old log-probs (FAST gives two optimizer steps per rollout, and a learner refuses
    to train the second without them), and the guardrail switches FP8 off when the mismatch stays
    high. One launch for the three: none of them depends on the others' outcome."""
    # The first prompt step 1 draws (the uniform curriculum over the 64 RL prompts, seed 0).
    uid = f"arith:{build_curriculum('uniform', uids=[f'arith:{i}' for i in range(64)], seed=0, total_steps=4).next_batch(2)[0]}"
    run = tmp_path / "run"
    rc, out = _grpo(reference_run, run, f"prompt:exit@{uid}", env=plugin_env(),
                    extra=("grpo.prompts_per_step=2", "grpo.samples_per_prompt=16", "faults.prompt_retries=0",
                           "faults.max_rollout_restarts=0", "reward.components={sometimes_hangs: 1.0}",
                           "reward.modules=[slow_rewards]", "reward.timeout_s=2",
                           # Any FP8 rounding exceeds this threshold: the guard must trip after two steps.
                           "rollout.precision=fp8", "grpo.mismatch.mode=tis", "grpo.mismatch.guard_kl=1e-12",
                           "grpo.mismatch.guard_steps=2"))
    assert rc == 0, out[-3000:]
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(r["reward/samples"] == 2 * 16 for r in rows)  # the batch is refilled to its size
    assert rows[-1]["faults/dropped_prompts"] == 1 and rows[-1]["faults/rollout_restarts"] == 0
    assert any(e["action"] == "dropped" and uid in str(e["actor"]) for e in _history(run))
    assert sum(r["reward/timeouts"] for r in rows) > 0
    assert json.loads((run / "report.json").read_text())["steps"] == 4
    _assert_fp8_fell_back(run, out, rows)


def _assert_fp8_fell_back(run: Path, out: str, rows: list[dict[str, float]]) -> None:
    """FP8 engines, TIS and the guardrail as the run above logs and checkpoints them."""
    assert "FP8-rounded weights (emulated" in out and "mismatch/kl above grpo.mismatch.guard_kl=1e-12" in out
    assert all(k in r for k in MISMATCH_KEYS for r in rows)
    assert rows[0]["optimizer_steps"] == 2
    # Steps 1-3 generate with FP8 weights (the guard trips after step 2; step 3's sync is full).
    assert [r["rollout/fp8_emulated"] for r in rows] == [1, 1, 1, 0]
    assert [r["faults/fp8_fallbacks"] for r in rows] == [0, 0, 1, 1]
    fp8_bytes, full_bytes = rows[0]["sync/bytes"], rows[2]["sync/bytes"]
    assert rows[1]["sync/bytes"] == fp8_bytes and fp8_bytes < full_bytes / 2  # 1 byte per linear weight
    # FP8 rounding is the mismatch: it is gone once the engines hold full-precision weights.
    assert rows[0]["mismatch/kl"] > 0 and rows[3]["mismatch/kl"] < rows[0]["mismatch/kl"] / 10
    state = load_run_state(latest_checkpoint(run)[1])  # type: ignore[index]
    assert state.precision["fp8_fallbacks"] == 1 and any(e["action"] == "fallback" for e in state.faults["history"])
