"""End to end through ``python -m rlplat.launch``: Ray + vLLM (CPU) + DeepSpeed (two learner ranks).

One uninterrupted run is the reference; a second run of the same config is killed with SIGKILL
after its step-2 checkpoint and resumed with ``resume=DIR``; its later metrics must equal the
reference's (CPU, fixed seed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rlplat.checkpoint import latest_checkpoint
from launch_helpers import FAST, REPRODUCED, wait_for_checkpoint
from rlplat.metrics import STEP_KEYS, read_metrics

pytestmark = pytest.mark.slow

def test_every_step_logs_the_contract_keys(reference_run: Path) -> None:
    rows = read_metrics(reference_run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        missing = [k for k in STEP_KEYS if k not in r]
        assert not missing, f"step {r['step']} lacks {missing}"
        assert 0.0 <= r["pass_rate"] <= 1.0 and r["tokens/generated"] > 0 and r["sync/bytes"] > 0
    assert [r["weights/version"] for r in rows] == [2, 3, 4, 5]  # version 1: the initial publish
    assert rows[0]["optimizer_steps"] == 2  # 8 prompts x 4 samples / global batch 16


def test_run_directory_holds_config_checkpoints_model_and_report(reference_run: Path) -> None:
    assert (reference_run / "config.yaml").is_file()
    assert latest_checkpoint(reference_run)[0] == 4  # type: ignore[index]
    assert (reference_run / "final_model" / "config.json").is_file()
    report = json.loads((reference_run / "report.json").read_text())
    assert report["steps"] == 4 and "pass_rate/start" in report


def test_sigkilled_run_resumes_and_reproduces_the_uninterrupted_metrics(reference_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "rlplat.launch", f"hydra.run.dir={run_dir}", *FAST]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    try:
        wait_for_checkpoint(proc, run_dir, 2, 600)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started, at once
        proc.wait()
    assert len(read_metrics(run_dir / "metrics.jsonl")) < 4
    out = subprocess.run([sys.executable, "-m", "rlplat.launch", f"resume={run_dir}"], capture_output=True,
                         text=True, timeout=600, start_new_session=True)
    assert out.returncode == 0, out.stderr[-3000:]
    resumed = read_metrics(run_dir / "metrics.jsonl")
    reference = read_metrics(reference_run / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    for ref, got in zip(reference, resumed):
        for key in REPRODUCED:
            assert got[key] == pytest.approx(ref[key], rel=1e-6, abs=1e-9), (ref["step"], key)
