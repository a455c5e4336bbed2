"""Shared settings for tests that run ``python -m rlplat.launch`` in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


