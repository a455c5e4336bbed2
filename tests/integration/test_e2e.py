"""End to end through ``python -m rlplat.launch``: Ray + vLLM (CPU) + DeepSpeed (two learner ranks).

The session's reference run (tests/integration/conftest.py) is checked here: the metrics keys of
every step and the run directory. That a run killed with SIGKILL (and one stopped by SIGTERM)
resumes with ``resume=DIR`` and reproduces these metrics is checked in test_faults.py, on the same
settings; the loop's side of every stop is tested in-process in tests/loop.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
    # Without a dashboard (cluster.dashboard=false) the stages run in the driver, and say so.
    assert manifest["runner"] == "driver" and manifest["job_id"] is None and manifest["seconds"] >= 0


def test_the_launcher_says_where_the_run_is_before_anything_else(reference_run: Path) -> None:
    """The run directory and how to follow it come first, before Ray's own notices."""
    from launch_helpers import log_path

    lines = log_path(reference_run).read_text().splitlines()
    assert lines[0] == f"rlplat: run directory {reference_run}"
    assert lines[1] == f"  follow it: tensorboard --logdir {reference_run / 'tensorboard'}"
