"""Shared settings for tests that run ``python -m rlplat.launch`` in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rlplat.checkpoint import latest_checkpoint
from rlplat.metrics import read_metrics

FAST = [
    "grpo.total_steps=4", "grpo.prompts_per_step=8", "grpo.samples_per_prompt=4", "grpo.global_batch=16",
    "sft.steps=30", "sft.batch_size=32", "checkpoint.every=2", "rollout.sampling.max_new_tokens=24",
    "data.synthetic.num_train=256", "data.synthetic.num_rl=64", "cluster.dashboard=false",
]
# Keys a resumed run must reproduce exactly (timing keys cannot).
REPRODUCED = ("pass_rate", "reward/mean", "kl", "entropy", "response_length/mean", "tokens/generated",
              "weights/version", "loss/policy", "sync/bytes")


def launch(run_dir: Path, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the launcher to completion."""
    return subprocess.run([sys.executable, "-m", "rlplat.launch", f"hydra.run.dir={run_dir}", *FAST, *extra],
                          capture_output=True, text=True, timeout=timeout, start_new_session=True)




def start(run_dir: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start the launcher in the background, in its own process group (so a test can kill it all)."""
    return subprocess.Popen([sys.executable, "-m", "rlplat.launch", f"hydra.run.dir={run_dir}", *FAST, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=env)


def wait_for(proc: subprocess.Popen[str], done: Any, what: str, timeout: float = 600) -> None:
    """Poll ``done()`` until true; fails if the run exits first or the timeout passes."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if done():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc={proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}"
                                 if proc.stderr else f"the run ended before {what}")
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout} s")


def wait_for_checkpoint(proc: subprocess.Popen[str], run_dir: Path, step: int, timeout: float = 600) -> None:
    """Wait until a complete checkpoint of ``step`` (or later) exists."""
    wait_for(proc, lambda: (latest_checkpoint(run_dir) or (0, None))[0] >= step, f"the step-{step} checkpoint",
             timeout)


def wait_for_steps(proc: subprocess.Popen[str], run_dir: Path, steps: int, timeout: float = 600) -> None:
    """Wait until ``metrics.jsonl`` holds ``steps`` lines."""
    wait_for(proc, lambda: len(read_metrics(run_dir / "metrics.jsonl")) >= steps, f"{steps} logged steps", timeout)


def placement(run_dir: Path) -> dict[str, Any]:
    """The run's ``placement.json`` (actor pids and nodes)."""
    return json.loads((run_dir / "placement.json").read_text())
