"""Progressive batching against uniform sampling on the tiny task: steps to a held-out pass rate.

For each seed (``--seeds``), one invocation:

1. runs ``stages=[warmstart,prefilter]`` once (the embedded default's warm start, then the paper's
   prefilter: 8 samples per training prompt, drop pass rate >= 0.75). The seed also draws the
   problem sets, so every seed has its own warm start: reusing one seed's warm-started model with
   another seed's problems would put warm-start problems into the held-out set;
2. runs GRPO twice from that warm-started model with the same budget (``--steps`` steps, 32 prompts
   x 8 samples each, the embedded default) on the same prefiltered prompts and pass-rate table,
   ``curriculum.name=uniform`` and ``curriculum.name=progressive``; only the curriculum differs
   (progressive with ``retire_threshold=null``, so that, as in the paper's Fig. 6, batching is the one
   change; uniform never retires);
3. reads ``eval/pass_rate`` every ``--eval-every`` steps: the sampled pass rate (temperature 1, as in
   training; ``--eval-samples`` per prompt, the same sampling seeds at every evaluation) on
   ``--eval-prompts`` problems held out of both the prefilter and training.

Reported: per arm, the median over seeds of the first evaluated step whose pass rate reaches
``--target`` (a run that never reaches it counts as infinitely slow), the final held-out pass rate,
and the median curve. Run directories are reused when complete, so an interrupted benchmark resumes.

Usage::

    python bench/bench_curriculum.py                       # 3 seeds x (warm start + 2 arms), 45 min on a busy 2-core box
    python bench/bench_curriculum.py --seeds 0 --steps 12 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

from common import launch_until, machine_info, write_json

ARMS: dict[str, list[str]] = {
    "uniform": ["curriculum.name=uniform"],
    "progressive": ["curriculum.name=progressive", "curriculum.options.retire_threshold=null"],
}


def eval_overrides(args: argparse.Namespace) -> list[str]:
    """Held-out evaluation settings; the prefilter needs them too, to leave the held-out prompts alone."""
    return [f"grpo.eval_every={args.eval_every}", f"grpo.eval_prompts={args.eval_prompts}",
            f"grpo.eval_samples={args.eval_samples}", "cluster.dashboard=false"]


def prepare(seed: int, root: Path, args: argparse.Namespace) -> Path:
    """Warm start and prefilter for ``seed`` (reused when already done); returns the run directory."""
    run_dir = root / f"prepare_seed{seed}"
    launch_until(run_dir, ["stages=[warmstart,prefilter]", f"seed={seed}", *eval_overrides(args)],
           run_dir / "stages" / "prefilter" / "manifest.json", args.retries)
    return run_dir


def run_arm(arm: str, seed: int, prepared: Path, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One GRPO run; returns its held-out curve, training pass rates and wall time."""
    run_dir = root / f"{arm}_seed{seed}"
    overrides = [f"model.path={prepared / 'warmstart_model'}", "stages=[grpo]", f"seed={seed}",
                 f"grpo.total_steps={args.steps}", "checkpoint.every=5",
                 f"curriculum.pass_rate_table={prepared / 'prefilter' / 'pass_rates.jsonl'}",
                 f"data.keep_uids={prepared / 'prefilter' / 'kept_uids.txt'}", *eval_overrides(args), *ARMS[arm]]
    t0 = time.perf_counter()
    launch_until(run_dir, overrides, run_dir / "report.json", args.retries)
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    curve = {m["step"]: m["eval/pass_rate"] for m in lines if "eval/pass_rate" in m}
    return {"arm": arm, "seed": seed, "overrides": overrides, "wall_s": time.perf_counter() - t0,
            "eval_curve": curve, "train_pass_rate": [m["pass_rate"] for m in lines],
            "prior_pass_rate": [m.get("curriculum/batch_prior_pass_rate") for m in lines]}


def steps_to(curve: dict[int, float], target: float) -> float:
    """First evaluated step with pass rate >= ``target``; ``inf`` if none."""
    return next((float(s) for s in sorted(curve) if curve[s] >= target), math.inf)


def summarize(runs: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """Per arm: steps to target per seed and their median, final and median-curve pass rates."""
    out: dict[str, Any] = {}
    for arm in ARMS:
        mine = [r for r in runs if r["arm"] == arm]
        if not mine:
            continue
        steps = sorted(mine[0]["eval_curve"])
        out[arm] = {
            "steps_to_target": {r["seed"]: steps_to(r["eval_curve"], target) for r in mine},
            "median_steps_to_target": statistics.median(steps_to(r["eval_curve"], target) for r in mine),
            "final_eval_pass_rate": {r["seed"]: r["eval_curve"][steps[-1]] for r in mine},
            # Mean over the evaluations: the area under the curve, finer than the step count
            # (which moves in steps of --eval-every).
            "mean_eval_pass_rate": {r["seed"]: statistics.fmean(r["eval_curve"].values()) for r in mine},
            "median_curve": {s: statistics.median(r["eval_curve"][s] for r in mine) for s in steps},
            "median_train_pass_rate": statistics.median(statistics.fmean(r["train_pass_rate"]) for r in mine),
        }
    return out


def table(summary: dict[str, Any], target: float) -> str:
    """Markdown table of the summary (what docs/benchmarks.md shows)."""
    header = (f"| arm | steps to {target:g} per seed | median | mean held-out pass rate over the run, per seed "
              "| final held-out pass rate per seed |")
    lines = [header, "|---|---|---|---|---|"]
    for arm, s in summary.items():
        per = ", ".join(_fmt(v) for v in s["steps_to_target"].values())
        mean = ", ".join(f"{v:.3f}" for v in s["mean_eval_pass_rate"].values())
        final = ", ".join(f"{v:.3f}" for v in s["final_eval_pass_rate"].values())
        lines.append(f"| {arm} | {per} | {_fmt(s['median_steps_to_target'])} | {mean} | {final} |")
    steps = next(iter(summary.values()))["median_curve"]
    lines += ["", "| step | " + " | ".join(str(k) for k in steps) + " |", "|---" * (len(steps) + 1) + "|"]
    for arm, s in summary.items():
        lines.append(f"| {arm} | " + " | ".join(f"{v:.3f}" for v in s["median_curve"].values()) + " |")
    return "\n".join(lines)


def _fmt(v: float) -> str:
    return "not reached" if math.isinf(v) else f"{v:g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--target", type=float, default=0.6, help="held-out pass rate to reach")
    ap.add_argument("--eval-every", type=int, default=3)
    ap.add_argument("--eval-prompts", type=int, default=256)
    ap.add_argument("--eval-samples", type=int, default=4)
    ap.add_argument("--retries", type=int, default=2, help="resumes of a run that failed (shared machine)")
    ap.add_argument("--root", type=Path, default=Path("runs/bench_curriculum"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    runs = []
    for seed in args.seeds:
        prepared = prepare(seed, args.root, args)
        for arm in ARMS:
            runs.append(run_arm(arm, seed, prepared, args.root, args))
            print(f"seed {seed} {arm}: {runs[-1]['eval_curve']}", flush=True)
    summary = summarize(runs, args.target)
    print(table(summary, args.target))
    write_json(args.json, {"machine": machine_info(), "args": {k: str(v) for k, v in vars(args).items()},
                           "summary": summary, "runs": runs})


if __name__ == "__main__":
    main()
