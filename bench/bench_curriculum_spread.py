"""The curriculum on a task with a real difficulty spread: four arms, equal budgets, several seeds.

Task: ``data.synthetic.task=spread`` (``--digits`` 3, ``--max-terms`` 3: sums of 2 or 3 operands
of 1 to 3 digits, every level equally common), warm-started as the default experiment is (a
teacher whose final answer slips 70% of the time, so GRPO has headroom on every level). The
learning rate is 5e-5: at the default 2e-4 every arm's held-out pass rate fell on this task (KL
0.2-0.4 within 16 steps, measured while calibrating), at 5e-5 uniform sampling learns.

For each seed: one ``stages=[warmstart,prefilter]`` run (the seed draws the problem sets, so each
seed has its own warm start and prefilter, 8 samples per prompt), then four GRPO runs from that
model with the same budget (``--steps`` steps of ``--prompts`` prompts x 8 samples):

* ``uniform``: every training prompt, shuffled epochs;
* ``uniform_ds``: the same with dynamic sampling (zero-advantage groups replaced, 2 rounds);
* ``progressive``: the prefilter's kept prompts and its pass-rate table, progressive batching with
  fresh pass rates (``drift=true``);
* ``progressive_ds``: the same with dynamic sampling.

Every arm is evaluated on the same ``--eval-prompts`` held-out prompts (kept out of the prefilter
and of training) every ``--eval-every`` steps. Reported per arm: steps to ``--target`` held-out pass
rate per seed and their median (never reached counts as infinitely slow), wall time to the target,
the final held-out pass rate, the mean share of zero-advantage groups per step, and the progressive
arms' target centre over the steps. Run directories are reused when complete, so an interrupted
benchmark continues where it stopped.

Usage::

    python bench/bench_curriculum_spread.py --seeds 0 1 2 3 4 --root /tmp/spread --json /tmp/spread.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

from bench_curriculum import steps_to
from common import launch_until, machine_info, write_json

ARMS: dict[str, tuple[bool, list[str]]] = {  # name -> (trains on the prefilter's output, overrides)
    "uniform": (False, ["curriculum.name=uniform"]),
    "uniform_ds": (False, ["curriculum.name=uniform", "curriculum.dynamic_sampling=true"]),
    "progressive": (True, ["curriculum=progressive", "curriculum.options.drift=true"]),
    "progressive_ds": (True, ["curriculum=progressive", "curriculum.options.drift=true",
                              "curriculum.dynamic_sampling=true"]),
}


def task_overrides(args: argparse.Namespace) -> list[str]:
    """The task, the sampling budget and the held-out evaluation, shared by every run of a seed."""
    return ["data.synthetic.task=spread", f"data.synthetic.digits={args.digits}",
            f"data.synthetic.max_terms={args.max_terms}", "rollout.sampling.max_new_tokens=64", f"grpo.eval_every={args.eval_every}",
            f"grpo.eval_prompts={args.eval_prompts}", f"grpo.eval_samples={args.eval_samples}",
            "cluster.dashboard=false", "progress=false"]


def prepare(seed: int, root: Path, args: argparse.Namespace) -> Path:
    """Warm start and prefilter for ``seed`` (reused when done); returns the run directory."""
    run_dir = root / f"prepare_seed{seed}"
    launch_until(run_dir, ["stages=[warmstart,prefilter]", f"seed={seed}", "prefilter.samples=8",
                           *task_overrides(args)], run_dir / "stages" / "prefilter" / "manifest.json", args.retries)
    return run_dir


def run_arm(arm: str, seed: int, prepared: Path, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One GRPO run; returns its held-out curve and per-step figures."""
    filtered, extra = ARMS[arm]
    run_dir = root / f"{arm}_seed{seed}"
    data = ([f"curriculum.pass_rate_table={prepared / 'prefilter' / 'pass_rates.jsonl'}",
             f"data.keep_uids={prepared / 'prefilter' / 'kept_uids.txt'}"] if filtered else [])
    overrides = [f"model.path={prepared / 'warmstart_model'}", "stages=[grpo]", f"seed={seed}",
                 f"grpo.total_steps={args.steps}", f"grpo.prompts_per_step={args.prompts}", f"learner.lr={args.lr}",
                 "grpo.samples_per_prompt=8", f"grpo.global_batch={args.prompts * 4}", "checkpoint.every=5",
                 *data, *task_overrides(args), *extra]
    launch_until(run_dir, overrides, run_dir / "report.json", args.retries)
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    clock, elapsed = {}, 0.0
    for r in rows:
        elapsed += r["time/step_s"] + r.get("time/eval_s", 0.0)
        clock[r["step"]] = elapsed
    return {"arm": arm, "seed": seed, "overrides": overrides,
            "eval_curve": {r["step"]: r["eval/pass_rate"] for r in rows if "eval/pass_rate" in r},
            "clock_s": clock, "train_pass_rate": [r["pass_rate"] for r in rows],
            "zero_advantage_frac": [r.get("curriculum/zero_advantage_frac") for r in rows],
            "target_center": [r.get("curriculum/target_center") for r in rows]}


def summarize(runs: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """Per arm: steps and seconds to the target per seed, medians, final pass rate, zero-advantage share."""
    out: dict[str, Any] = {}
    for arm in ARMS:
        mine = [r for r in runs if r["arm"] == arm]
        if not mine:
            continue
        steps = {r["seed"]: steps_to(r["eval_curve"], target) for r in mine}
        seconds = {r["seed"]: (r["clock_s"][int(s)] if math.isfinite(s) else math.inf)
                   for r, s in zip(mine, steps.values())}
        last = max(mine[0]["eval_curve"])
        centres = [r["target_center"] for r in mine if r["target_center"][0] is not None]
        out[arm] = {
            "steps_to_target": steps, "median_steps_to_target": statistics.median(steps.values()),
            "seconds_to_target": seconds, "median_seconds_to_target": statistics.median(seconds.values()),
            "final_eval_pass_rate": {r["seed"]: r["eval_curve"][last] for r in mine},
            "mean_zero_advantage_frac": statistics.fmean(
                statistics.fmean(x for x in r["zero_advantage_frac"] if x is not None) for r in mine),
            "median_curve": {s: statistics.median(r["eval_curve"][s] for r in mine) for s in sorted(mine[0]["eval_curve"])},
            "median_target_center": [statistics.median(c[i] for c in centres) for i in range(len(centres[0]))]
            if centres else None,
        }
    return out


def table(summary: dict[str, Any], target: float) -> str:
    """Markdown tables of the summary (what docs/benchmarks.md shows)."""
    lines = [f"| arm | steps to {target:g} per seed | median | median s to {target:g} | final held-out pass rate "
             "per seed | zero-advantage groups |", "|---|---|---|---|---|---|"]
    for arm, s in summary.items():
        per = ", ".join(_fmt(v) for v in s["steps_to_target"].values())
        final = ", ".join(f"{v:.3f}" for v in s["final_eval_pass_rate"].values())
        lines.append(f"| {arm} | {per} | {_fmt(s['median_steps_to_target'])} | "
                     f"{_fmt(s['median_seconds_to_target'], '.0f')} | {final} | {s['mean_zero_advantage_frac']:.2f} |")
    steps = next(iter(summary.values()))["median_curve"]
    lines += ["", "| median held-out pass rate at step | " + " | ".join(str(k) for k in steps) + " |",
              "|---" * (len(steps) + 1) + "|"]
    for arm, s in summary.items():
        lines.append(f"| {arm} | " + " | ".join(f"{v:.3f}" for v in s["median_curve"].values()) + " |")
    for arm, s in summary.items():
        if s["median_target_center"]:
            lines.append(f"\n{arm} target centre by step (median): "
                         + ", ".join(f"{c:.2f}" for c in s["median_target_center"]))
    return "\n".join(lines)


def _fmt(v: float, spec: str = "g") -> str:
    return "not reached" if math.isinf(v) else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--prompts", type=int, default=32, help="prompts per step (8 samples each)")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--digits", type=int, default=3)
    ap.add_argument("--max-terms", type=int, default=3)
    ap.add_argument("--target", type=float, default=0.1, help="held-out pass rate to reach")
    ap.add_argument("--eval-every", type=int, default=4)
    ap.add_argument("--eval-prompts", type=int, default=128)
    ap.add_argument("--eval-samples", type=int, default=4)
    ap.add_argument("--retries", type=int, default=2, help="resumes of a run that failed (shared machine)")
    ap.add_argument("--root", type=Path, default=Path("runs/bench_curriculum_spread"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    runs = []
    for seed in args.seeds:
        prepared = prepare(seed, args.root, args)
        for arm in args.arms:
            runs.append(run_arm(arm, seed, prepared, args.root, args))
            print(f"seed {seed} {arm}: {runs[-1]['eval_curve']}", flush=True)
    summary = summarize(runs, args.target)
    print(table(summary, args.target))
    write_json(args.json, {"machine": machine_info(), "args": {k: str(v) for k, v in vars(args).items()},
                           "summary": summary, "runs": runs})


if __name__ == "__main__":
    main()
