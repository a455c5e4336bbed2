"""The embedded default with each sequence split over two learner ranks against the same runs unsplit.

``learner.sequence_parallel=2`` makes the default's two learner ranks one group splitting every
sequence with Ulysses attention (rlplat/learner/ulysses.py); ``=1`` keeps them two data-parallel
ranks. Same seed, same data; from each run's metrics:

* **SFT** (the warm start, ``--sft-steps`` steps): the loss of every step, for the split pair and
  for one learner rank alone (``cluster.devices_per_node=1``). Both differ from the two
  data-parallel ranks only by float32 rounding (the order of the sums), which training amplifies
  step after step; the one-rank arm measures how fast that rounding alone grows.
* **GRPO** (``--grpo-steps`` steps from one shared warm-started model): per step, what the learners
  compute (policy loss, KL, entropy, gradient norm) and what the samples show (pass rate, mean
  reward, generated tokens: equal when the engines sampled the same tokens from the two runs'
  weights), and the learners' time per step (``time/train_s``; Ulysses adds two all-to-alls per
  attention layer, gloo on CPU).

Usage::

    python bench/bench_sequence_parallel.py                 # about 10 min on 2 cores
    python bench/bench_sequence_parallel.py --grpo-steps 6 --json runs/bench/sequence_parallel.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from common import launch_until, machine_info, run_launcher, summary, write_json

COMMON = ["cluster.dashboard=false"]
GRPO_KEYS = ("loss/policy", "kl", "entropy", "grad_norm", "pass_rate", "reward/mean", "tokens/generated")
SFT_ARMS = {"sp1": ["learner.sequence_parallel=1"], "sp2": ["learner.sequence_parallel=2"],
            "one_rank": ["cluster.devices_per_node=1"]}


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), 1e-12)


def sft_losses(root: Path, arm: str, steps: int) -> list[float]:
    """The warm start's loss at every step of ``arm`` (a finished run of it is read again, not rerun)."""
    metrics = root / f"sft_{arm}" / "stages" / "warmstart" / "metrics.jsonl"
    if not (metrics.parent / "manifest.json").is_file():
        run_launcher(root / f"sft_{arm}", ["stages=[warmstart]", f"sft.steps={steps}", *COMMON, *SFT_ARMS[arm]])
    lines = metrics.read_text().splitlines()
    return [json.loads(line)["sft/loss"] for line in lines if line.strip()]


def sft_comparison(root: Path, steps: int) -> dict[str, Any]:
    """Each arm's relative loss difference from the two data-parallel ranks, at chosen steps."""
    losses = {arm: sft_losses(root, arm, steps) for arm in SFT_ARMS}
    marks = sorted({1, 2, 5, 10, 20, steps} & set(range(1, steps + 1)))
    return {arm: {str(s): rel(losses["sp1"][s - 1], losses[arm][s - 1]) for s in marks}
            for arm in ("sp2", "one_rank")}


def grpo_comparison(root: Path, steps: int) -> dict[str, Any]:
    """Both GRPO arms from one warm start: every step's figures side by side."""
    warm = root / "warm"
    launch_until(warm, ["stages=[warmstart]", *COMMON], warm / "warmstart_model" / "config.json", 1)
    runs = {f"sp{n}": run_launcher(root / f"grpo_sp{n}", [f"model.path={warm / 'warmstart_model'}", "stages=[grpo]",
                                                           f"grpo.total_steps={steps}", *COMMON,
                                                           f"learner.sequence_parallel={n}"])
            for n in (1, 2)}
    rows = [{"step": a["step"], **{k: {"sp1": a[k], "sp2": b[k], "rel_diff": rel(a[k], b[k])} for k in GRPO_KEYS}}
            for a, b in zip(runs["sp1"], runs["sp2"], strict=True)]
    return {"steps": rows, "train_s_median": {arm: summary([m["time/train_s"] for m in lines[1:]])["median"]
                                              for arm, lines in runs.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sft-steps", type=int, default=30)
    parser.add_argument("--grpo-steps", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench_sp_"))
    start = machine_info()
    result = {"machine_start": start, "sft_rel_diff_from_sp1": sft_comparison(root, args.sft_steps),
              "grpo": grpo_comparison(root, args.grpo_steps), "machine_end": machine_info(),
              "args": {k: str(v) for k, v in vars(args).items()}}
    write_json(args.json, result)


if __name__ == "__main__":
    main()
