"""ZeRO-3 start-up memory: each learner rank's host memory while it loads the policy and the
reference, built already sharded (``learner.sharded_init=true``, the default) against loaded whole
and then sharded by DeepSpeed (``false``, what every rank did before), same model, same run.

For each arm the benchmark starts a real learner group (``LearnerGroup``: 2 ranks, ZeRO-3, float32,
with the reference model) on the 100M Llama (``model=llama_100m``, built locally) and reads each
rank's ``load_peak_bytes``: the peak resident memory (VmHWM, reset just before) while the rank read
the policy and the reference, above what it held before (the model's code and the sharded start's
DeepSpeed modules are imported before the window, in both arms), and ``setup_peak_bytes``:
the peak of the rank's whole start-up, DeepSpeed's initialisation included. The model's own size
(parameters x 4 bytes) is the reference figure: a whole copy. Arms alternate ``--repeats`` times;
medians reported.

Usage::

    python bench/bench_zero3_startup.py                    # 100m, 3 repeats per arm, about 4 min
    python bench/bench_zero3_startup.py --model tiny --repeats 1 --json out.json
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

from common import build_model, count_params, machine_info, write_json

GIB = 1024**3


def start_up(model_dir: Path, sharded: bool) -> list[dict[str, float]]:
    """Start two ZeRO-3 learner ranks on ``model_dir`` with a reference; each rank's memory report."""
    from dataclasses import replace

    from ray.util.placement_group import remove_placement_group

    from rlplat.config.loader import load
    from rlplat.distributed.cluster import create_placement_group
    from rlplat.distributed.placement import plan_placement
    from rlplat.learner.group import LearnerGroup
    from rlplat.runtime.stage_actors import learner_spec

    cfg, _ = load(["learner.zero_stage=3", "learner.reference_model=true"])
    cfg = replace(cfg, learner=replace(cfg.learner, sharded_init=sharded))
    plan = plan_placement(cfg.cluster, cfg.rollout)
    pg = create_placement_group(plan, 120)
    group = LearnerGroup(learner_spec(cfg, str(model_dir), cfg.learner.lr), plan, pg, cfg.timeouts)
    try:
        return group.wait_started().memory()
    finally:
        group.shutdown()
        remove_placement_group(pg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="100m", help="tiny or 100m (built locally)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from rlplat.config.schema import ClusterConfig
    from rlplat.distributed.cluster import start_ray

    start_ray(ClusterConfig(num_cpus=4, dashboard=False))
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(args.model, Path(tmp))
        whole = count_params(model_dir) * 4
        reports: dict[str, list[dict[str, float]]] = {"sharded": [], "whole": []}
        for _ in range(args.repeats):
            for arm in ("sharded", "whole"):
                ranks = start_up(model_dir, arm == "sharded")
                reports[arm] += ranks
                shown = "; ".join(f"load {r['load_peak_bytes'] / GIB:.3f}, start-up {r['setup_peak_bytes'] / GIB:.3f}"
                                  for r in ranks)
                print(f"{arm:8s} per rank (GiB): {shown}", flush=True)
    result: dict[str, Any] = {"machine": machine_info(), "model": args.model, "model_bytes": whole, "ranks": 2,
                              "with_reference": True}
    for arm, ranks in reports.items():
        load = statistics.median(r["load_peak_bytes"] for r in ranks)
        setup = statistics.median(r["setup_peak_bytes"] for r in ranks)
        result[arm] = {"load_peak_gib_median": load / GIB, "load_peak_over_model": load / whole,
                       "setup_peak_gib_median": setup / GIB, "samples": len(ranks)}
        print(f"{arm:8s} median per rank: loading {load / GIB:.3f} GiB = {load / whole:.2f} x the model "
              f"({whole / GIB:.3f} GiB); whole start-up peak {setup / GIB:.3f} GiB")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
