"""FP8 rollouts (emulated on CPU) with and without mismatch correction, against full precision.

For each seed (``--seeds``): one warm start (the embedded default's, ``stages=[warmstart]``), then
GRPO from it with the same budget (``--steps`` steps of the embedded default, 32 prompts x 8
samples) in four arms that differ only in rollout precision and correction:

* ``full``: full-precision engines, the engine's log-probs as PPO's old policy (the default);
* ``fp8_none``: FP8 engines, the engine's log-probs as the old policy, no correction (what a
  platform without mismatch handling does);
* ``fp8_tis``: FP8 engines, the learner's old log-probs, truncated importance sampling (C = 2);
* ``fp8_mis``: FP8 engines, the learner's old log-probs, masked importance sampling ([0.5, 2]).

The guardrail is off in every arm, so the FP8 arms stay FP8. Reported per arm: the final held-out
pass rate per seed and its median, the median over the run of ``mismatch/kl``,
``mismatch/ratio_max`` and ``mismatch/clipped_frac``, and the sync payload. On CPU the FP8 arms
emulate FP8 weights (``rollout/fp8_emulated``): no timing from them means anything for FP8 speed.

Usage::

    python bench/bench_fp8.py                          # 3 seeds x 4 arms
    python bench/bench_fp8.py --seeds 0 --steps 6 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from common import launch_until, machine_info, write_json

FP8 = ["rollout.precision=fp8", "grpo.mismatch.guard_kl=null"]
ARMS: dict[str, list[str]] = {
    "full": [],
    "fp8_none": [*FP8, "grpo.old_logprobs=rollout", "grpo.mismatch.mode=log"],
    "fp8_tis": [*FP8, "grpo.old_logprobs=learner", "grpo.mismatch.mode=tis"],
    "fp8_mis": [*FP8, "grpo.old_logprobs=learner", "grpo.mismatch.mode=mis"],
}
MISMATCH = ("mismatch/kl", "mismatch/ratio_max", "mismatch/clipped_frac")


def run_arm(arm: str, seed: int, warm: Path, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One GRPO run of ``arm``; returns its held-out curve and mismatch metrics per step."""
    run_dir = root / f"{arm}_seed{seed}"
    overrides = [f"model.path={warm / 'warmstart_model'}", "stages=[grpo]", f"seed={seed}",
                 f"grpo.total_steps={args.steps}", f"grpo.eval_every={args.eval_every}",
                 f"grpo.eval_prompts={args.eval_prompts}", "grpo.eval_samples=4", "cluster.dashboard=false",
                 *ARMS[arm]]
    launch_until(run_dir, overrides, run_dir / "report.json", args.retries)
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return {"arm": arm, "seed": seed, "overrides": overrides,
            "eval_curve": {m["step"]: m["eval/pass_rate"] for m in lines if "eval/pass_rate" in m},
            "mismatch": {k: [m[k] for m in lines] for k in MISMATCH},
            "fp8_emulated": [m["rollout/fp8_emulated"] for m in lines], "sync_bytes": lines[-1]["sync/bytes"]}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per arm: final held-out pass rate per seed and median, median mismatch metrics, payload."""
    out: dict[str, Any] = {}
    for arm in ARMS:
        mine = [r for r in runs if r["arm"] == arm]
        finals = {r["seed"]: r["eval_curve"][max(r["eval_curve"])] for r in mine}
        out[arm] = {"final_eval_pass_rate": finals, "median_final": statistics.median(finals.values()),
                    **{k: statistics.median(v for r in mine for v in r["mismatch"][k]) for k in MISMATCH},
                    "sync_bytes": mine[0]["sync_bytes"], "fp8_emulated": max(max(r["fp8_emulated"]) for r in mine)}
    return out


def table(summary: dict[str, Any]) -> str:
    """Markdown table of the summary (what docs/benchmarks.md shows)."""
    full = summary["full"]["median_final"]
    lines = ["| arm | final held-out pass rate per seed | median | vs full | median mismatch/kl | median "
             "mismatch/ratio_max | median clipped_frac | sync bytes |", "|---|---|---|---|---|---|---|---|"]
    for arm, s in summary.items():
        per = ", ".join(f"{v:.3f}" for v in s["final_eval_pass_rate"].values())
        lines.append(f"| {arm} | {per} | {s['median_final']:.3f} | {s['median_final'] - full:+.3f} | "
                     f"{s['mismatch/kl']:.2e} | {s['mismatch/ratio_max']:.3f} | {s['mismatch/clipped_frac']:.4f} "
                     f"| {s['sync_bytes']:,} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--eval-prompts", type=int, default=128)
    ap.add_argument("--retries", type=int, default=2, help="resumes of a run that failed (shared machine)")
    ap.add_argument("--root", type=Path, default=Path("runs/bench_fp8"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    runs = []
    for seed in args.seeds:
        warm = args.root / f"warmstart_seed{seed}"
        launch_until(warm, ["stages=[warmstart]", f"seed={seed}", "cluster.dashboard=false"],
                     warm / "stages" / "warmstart" / "manifest.json", args.retries)
        for arm in ARMS:
            runs.append(run_arm(arm, seed, warm, args.root, args))
            print(f"seed {seed} {arm}: {runs[-1]['eval_curve']}", flush=True)
    summary = summarize(runs)
    print(table(summary))
    write_json(args.json, {"machine": machine_info(), "args": {k: str(v) for k, v in vars(args).items()},
                           "summary": summary, "runs": runs})


if __name__ == "__main__":
    main()
