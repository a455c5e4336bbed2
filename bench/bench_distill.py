"""Distillation against SFT alone: which student gets closer to its teacher on held-out text?

One teacher (the tiny default Llama warm-started on the built-in task's right worked solutions,
``stages=[warmstart]`` with ``tiny_pipeline``'s data), then for each seed two students of the same
new, smaller shape (``distill.student=new``, the ``tiny_pipeline`` shape) trained for the same
``--steps`` on the same texts with the same batch and learning rate. The texts are worked
solutions whose final answer slips at ``1 - --text-accuracy`` (``data.synthetic.teacher_accuracy``:
the reasoning stays right, one answer digit changes), as data from a weaker source would:

* ``distill``: forward KL to the teacher's next-token distribution (``distill.kl_weight=1``);
* ``sft``: cross-entropy on the solutions alone (``distill.kl_weight=0 distill.lm_weight=1``: the
  same stage as continued pretraining), the SFT-only student.

Both report, on held-out problems' right solutions, the student's cross-entropy, the teacher's, and the
KL(teacher || student) (the teacher scores held-out text in both arms; it trains only the first).
The figure of merit is the gap ``student - teacher`` of held-out loss, and the KL.

Usage::

    python bench/bench_distill.py                      # 3 seeds, 100 steps
    python bench/bench_distill.py --seeds 0 --steps 60 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from common import launch_until, machine_info, write_json

DATA = ["data.synthetic.num_train=2000", "data.synthetic.num_rl=600"]
STUDENT = ["distill.student=new", "distill.student_shape.hidden_size=96", "distill.student_shape.intermediate_size=288",
           "distill.student_shape.num_layers=3", "distill.student_shape.num_heads=3",
           "distill.student_shape.num_kv_heads=1"]
ARMS: dict[str, list[str]] = {
    "distill": ["distill.kl_weight=1", "distill.lm_weight=0"],
    "sft": ["distill.kl_weight=0", "distill.lm_weight=1"],
}


def run_arm(arm: str, seed: int, teacher: Path, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One student of ``arm``; returns the figures of its stage manifest."""
    run_dir = root / f"{arm}_seed{seed}"
    overrides = [f"model.path={teacher}", f"distill.teacher_path={teacher}", "stages=[distill]", f"seed={seed}",
                 f"distill.steps={args.steps}", "distill.batch_size=64", "distill.lr=3e-3", "distill.eval_rows=128",
                 "cluster.dashboard=false", f"data.synthetic.teacher_accuracy={args.text_accuracy}", *DATA, *STUDENT,
                 *ARMS[arm]]
    manifest = run_dir / "stages" / "distill" / "manifest.json"
    launch_until(run_dir, overrides, manifest, args.retries)
    metrics = json.loads(manifest.read_text())["metrics"]
    return {"arm": arm, "seed": seed, "overrides": overrides, **metrics,
            "gap": metrics["distill/heldout_lm_loss"] - metrics["distill/teacher_heldout_lm_loss"]}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per arm: held-out loss gap to the teacher and KL, per seed and median."""
    out: dict[str, Any] = {}
    for arm in ARMS:
        mine = [r for r in runs if r["arm"] == arm]
        out[arm] = {key: {"per_seed": [r[key] for r in mine], "median": statistics.median(r[key] for r in mine)}
                    for key in ("gap", "distill/heldout_kl", "distill/heldout_lm_loss", "distill/teacher_heldout_lm_loss")}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--teacher-steps", type=int, default=300)
    parser.add_argument("--text-accuracy", type=float, default=0.5)
    parser.add_argument("--root", type=Path, default=Path("runs/bench_distill"))
    parser.add_argument("--retries", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    warm = args.root / "teacher"
    launch_until(warm, ["stages=[warmstart]", f"sft.steps={args.teacher_steps}", "cluster.dashboard=false",
                        "data.synthetic.teacher_accuracy=1.0", *DATA],
                 warm / "stages" / "warmstart" / "manifest.json", args.retries)
    teacher = (warm / "warmstart_model").resolve()
    runs = [run_arm(arm, seed, teacher, args.root, args) for seed in args.seeds for arm in ARMS]
    result = {"machine": machine_info(), "steps": args.steps, "seeds": args.seeds, "text_accuracy": args.text_accuracy,
              "runs": runs,
              "summary": summarize(runs)}
    write_json(args.json, result)
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
