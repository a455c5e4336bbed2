"""FP8 rollouts on CPU (emulated: FP8-rounded weights in the engines), the TIS correction with the
learners' own old log-probs, and the guardrail that switches FP8 off when the mismatch stays high.

The run starts GRPO from the reference run's warm-started model. FAST gives two optimizer steps per
rollout, so the second one trains on log-probs the learners recomputed before the first (a learner
refuses to train with ``grpo.old_logprobs=learner`` without them, so the run's success shows it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from launch_helpers import launch
from rlplat.checkpoint import latest_checkpoint, load_run_state
from rlplat.metrics import read_metrics

pytestmark = pytest.mark.slow
MISMATCH_KEYS = ("mismatch/ratio_mean", "mismatch/ratio_max", "mismatch/kl", "mismatch/clipped_frac")


def test_fp8_with_tis_logs_the_mismatch_and_the_guard_falls_back_to_full_precision(reference_run: Path,
                                                                                   tmp_path: Path) -> None:
    run = tmp_path / "run"
    # Any FP8 rounding exceeds this threshold: the guard must trip after two steps.
    rc, out = launch(run, f"model.path={reference_run / 'warmstart_model'}", "stages=[grpo]", "rollout.precision=fp8",
                     "grpo.mismatch.mode=tis", "grpo.mismatch.guard_kl=1e-12", "grpo.mismatch.guard_steps=2",
                     # One learner beside one engine: the subject is FP8 numerics, not the ranks.
                     "cluster.devices_per_node=1")
    assert rc == 0, out[-3000:]
    assert "FP8-rounded weights (emulated" in out and "mismatch/kl above grpo.mismatch.guard_kl=1e-12" in out
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all(k in r for k in MISMATCH_KEYS for r in rows)
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
