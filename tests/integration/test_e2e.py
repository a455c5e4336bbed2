"""End to end through ``python -m rlplat.launch``: Ray + vLLM (CPU) + DeepSpeed (two learner ranks).

One uninterrupted run is the reference; a second run of the same config is killed with SIGKILL
after its step-2 checkpoint and resumed with ``resume=DIR``; its later metrics must equal the
reference's (CPU, fixed seed).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launch_helpers import assert_reproduces, killed_after, resume
from rlplat.checkpoint import latest_checkpoint
from rlplat.metrics import STEP_KEYS, read_metrics

pytestmark = pytest.mark.slow


def test_every_step_logs_the_contract_keys(reference_run: Path) -> None:
    rows = read_metrics(reference_run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        missing = [k for k in STEP_KEYS if k not in r]
        assert not missing, f"step {r['step']} lacks {missing}"
        assert 0.0 <= r["pass_rate"] <= 1.0 and r["tokens/generated"] > 0 and r["sync/bytes"] > 0
        assert r["weights/staleness"] == 0  # synchronous GRPO: every sample comes from the trained weights
    # Version 0 is the model the engines started from: no sync re-sends it before step 1.
    assert [r["weights/version"] for r in rows] == [1, 2, 3, 4]
    assert rows[0]["optimizer_steps"] == 2  # 8 prompts x 4 samples / global batch 16
    # Every sample of the step was scored once, and the pool's counters cover exactly those.
    assert all(r["reward/samples"] == 8 * 4 for r in rows)
    # Full precision measures its mismatch too (vLLM's CPU kernels against the learner's).
    for r in rows:
        assert r["rollout/fp8_emulated"] == 0 and r["mismatch/clipped_frac"] == 0  # mode=log: no correction
        assert 0 <= r["mismatch/kl"] < 1e-3 and r["mismatch/ratio_max"] >= r["mismatch/ratio_mean"] > 0


def test_run_directory_holds_config_checkpoints_model_and_report(reference_run: Path) -> None:
    assert (reference_run / "config.yaml").is_file()
    assert latest_checkpoint(reference_run)[0] == 4  # type: ignore[index]
    final = reference_run / "final_model"
    assert (final / "config.json").is_file() and (final / "tokenizer.json").is_file()
    report = json.loads((reference_run / "report.json").read_text())
    assert report["steps"] == 4 and "pass_rate/start" in report
    manifest = json.loads((reference_run / "stages" / "grpo" / "manifest.json").read_text())
    assert manifest["model_path"] == str(final) and manifest["input_model"].endswith("warmstart_model")


def test_sigkilled_run_resumes_and_reproduces_the_uninterrupted_metrics(reference_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    killed_after(run_dir, 2)
    rc, out = resume(run_dir, "faults.inject=[]")
    assert rc == 0, out[-3000:]
    assert_reproduces(reference_run, run_dir)
