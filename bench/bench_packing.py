"""Padded against packed learner micro-batches on the same GRPO work, alternating A B A B.

One warm start of the embedded default (``stages=[warmstart]``: its completions end at EOS, so their
lengths vary), then ``--pairs`` pairs of GRPO runs from it with the same seed: A pads every
micro-batch to its longest sequence (``learner.micro_batch_size`` sequences), B packs sequences into
rows of ``--pack-tokens`` tokens under a budget of ``--max-tokens`` positions per micro-batch. From
each run's ``metrics.jsonl``: the share of computed positions that are real tokens
(``positions/real_share``), the learners' time per step (``time/train_s``), medians over steps after
the first; and step 1's policy loss, which both arms compute on identical samples (same seed, same
weights), so it must agree to float tolerance.

Usage::

    python bench/bench_packing.py                       # 2 pairs x 6 steps (about 12 min on 2 cores)
    python bench/bench_packing.py --pairs 1 --steps 4 --json runs/bench/packing.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from common import launch_until, machine_info, run_launcher, summary, write_json

COMMON = ["stages=[grpo]", "cluster.dashboard=false"]


def arms(pack_tokens: int, max_tokens: int) -> dict[str, list[str]]:
    """Launcher overrides of each arm."""
    return {"padded": [], "packed": [f"learner.pack_tokens={pack_tokens}",
                                     f"learner.max_tokens_per_micro_batch={max_tokens}"]}


def measure(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of one run (steps after the first; step 1's loss)."""
    later = [m for m in lines if m["step"] > 1]
    return {"real_share": summary([m["positions/real_share"] for m in later]),
            "train_s": summary([m["time/train_s"] for m in later]),
            "step_s": summary([m["time/step_s"] for m in later]),
            "loss_step1": lines[0]["loss/policy"], "steps": len(lines)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--pack-tokens", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=2048)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench_packing_"))
    start = machine_info()
    warm = root / "warm"
    launch_until(warm, ["stages=[warmstart]", "cluster.dashboard=false"], warm / "warmstart_model" / "config.json", 1)
    runs: dict[str, list[dict[str, Any]]] = {"padded": [], "packed": []}
    for pair in range(args.pairs):
        for arm, extra in arms(args.pack_tokens, args.max_tokens).items():
            lines = run_launcher(root / f"{arm}{pair}", [f"model.path={warm / 'warmstart_model'}", *COMMON,
                                                          f"grpo.total_steps={args.steps}", *extra])
            runs[arm].append(measure(lines))
            print(arm, pair, runs[arm][-1], flush=True)
    result = {"machine_start": start, "machine_end": machine_info(), "args": {k: str(v) for k, v in vars(args).items()},
              "runs": runs,
              "median": {arm: {key: summary([r[key]["median"] for r in rs])["median"]
                               for key in ("real_share", "train_s", "step_s")} for arm, rs in runs.items()}}
    write_json(args.json, result)


if __name__ == "__main__":
    main()
