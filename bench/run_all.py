"""Run every benchmark (``make bench``), one after another, and print their tables.

Each benchmark runs as its own process (they start Ray and vLLM engines; sequential runs keep
them from competing for the cores) and writes JSON into ``--out``; the tables printed at the end
are the ones in docs/benchmarks.md, rendered from those files.

Usage::

    python bench/run_all.py                       # everything (about an hour on 2 shared cores)
    python bench/run_all.py --quick               # tiny model, one curriculum seed (about 20 min)
    python bench/run_all.py --only grpo,sync --out runs/bench
    python bench/run_all.py --render-only --out runs/bench   # tables from existing JSON
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# name -> (script, full arguments, --quick arguments)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "rewards": ("bench_rewards.py", ["--samples", "600", "--repeats", "3"], ["--samples", "300", "--repeats", "2"]),
    "grpo": ("bench_grpo.py", ["--models", "tiny,100m", "--steps", "6", "--hf-repeats", "3"],
             ["--models", "tiny", "--steps", "4", "--hf-repeats", "1"]),
    "sync": ("bench_sync.py", ["--models", "tiny,100m", "--bucket-mb", "16,64,256", "--repeats", "7"],
             ["--models", "tiny", "--bucket-mb", "64", "--repeats", "3"]),
    # Owned by the curricula engineer; its section of docs/benchmarks.md is rendered by the script.
    "curriculum": ("bench_curriculum.py", [], ["--seeds", "0", "--steps", "12"]),
}


def run(name: str, out: Path, quick: bool) -> float:
    """Run one benchmark, its JSON going to ``out/<name>.json``; returns its wall time."""
    script, full, short = BENCHMARKS[name]
    cmd = [sys.executable, str(HERE / script), *(short if quick else full), "--json", str(out / f"{name}.json")]
    if name in ("grpo", "sync"):
        cmd += ["--workdir", str(out / "work")]  # models are built once and shared
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    with open(out / f"{name}.log", "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed (exit {proc.returncode}); see {out / f'{name}.log'}")
    return time.perf_counter() - start


# ------------------------------------------------------------------------------- tables


def _f(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}"


def _ceiling(x: float | None) -> str:
    return "n/a (in cache)" if x is None else f"{x:.0f}"


def grpo_tables(data: dict[str, Any]) -> str:
    """Step-time breakdown and tokens/s tables of bench_grpo.py's JSON."""
    lines = [("| model | step s | rollout s | reward s | train s | sync s | engine tokens/s | "
              "HF generate tokens/s (processes x threads) | engine / best HF | ceiling tokens/s: memory, compute |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for m in data["models"]:
        med = {k: v["median"] for k, v in m["medians"].items()}
        hf = ", ".join(f"{k}: {h['tokens_per_s']['median']:.0f}" for k, h in m["hf_generate"].items())
        lines.append(
            f"| {m['model']} ({m['params'] / 1e6:.1f}M) | {_f(med['time/step_s'])} | {_f(med['time/rollout_s'])} | "
            f"{_f(med['time/reward_s'])} | {_f(med['time/train_s'])} | {_f(med['time/sync_s'])} | "
            f"{med['tokens_per_s']:.0f} | {hf} | "
            f"{m['engine_vs_best_hf']:.2f}x | {_ceiling(m.get('memory_ceiling_tokens_per_s'))}, "
            f"{m['compute_ceiling_tokens_per_s']:.0f} |")
    lines.append("")
    lines.append("| model | share of step: rollout / reward / train / sync | steps counted | load avg (start, end) |")
    lines.append("|---|---|---|---|")
    for m in data["models"]:
        med = {k: v["median"] for k, v in m["medians"].items()}
        parts = [med[f"time/{k}_s"] / med["time/step_s"] * 100 for k in ("rollout", "reward", "train", "sync")]
        lines.append(f"| {m['model']} | {' / '.join(f'{p:.0f}%' for p in parts)} | "
                     f"{m['medians']['time/step_s']['n']} | {m['loadavg']['start'][0]:.1f}, {m['loadavg']['end'][0]:.1f} |")
    return "\n".join(lines)


def sync_tables(data: dict[str, Any]) -> str:
    """Sync bandwidth, phases and references of bench_sync.py's JSON."""
    refs = data["references_before"], data.get("references_after", data["references_before"])
    lines = [("| model | bucket MB | buckets | streamed | sync s | sync GB/s | paired memcpy GB/s | sync / memcpy | "
              "export s | engine load s (round trip / in engine) |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for m in data["models"]:
        for r in m["syncs"]:
            # The phase split runs export then load, so it exists for the non-streamed rows only.
            phases = (f"{r['export_s']['median']:.3f} | {r['load_roundtrip_s']['median']:.3f} / "
                      f"{r['load_in_engine_s']['median']:.3f}") if "export_s" in r else "- | -"
            lines.append(
                f"| {m['model']} ({r['nbytes'] / 1e6:.1f} MB) | {r['bucket_mb']} | {r['buckets']} | "
                f"{'yes' if r.get('stream') else 'no'} | "
                f"{r['seconds']['median']:.3f} | {r['gbps']:.3f} | {r['paired_memcpy_gbps']['median']:.2f} | "
                f"{r['sync_over_memcpy']['median']:.1%} | {phases} |")
    lines += ["", "| references, 1 GiB (GB/s) | before | after |", "|---|---|---|"]
    for key in refs[0]:
        if key.startswith("memcpy"):
            lines.append(f"| `copy_`, {key.split('_')[1]} | {refs[0][key]['median']:.2f} | {refs[1][key]['median']:.2f} |")
    for key in ("write", "read_copy"):
        lines.append(f"| /dev/shm {key.replace('_', ' + ')}, 1 thread | {refs[0]['shm_1thread'][key]['median']:.2f} | "
                     f"{refs[1]['shm_1thread'][key]['median']:.2f} |")
    lines += ["", "| model | bucket MB | pack | write | pack + write | pack_to_file (the export) | read + copy |",
              "|---|---|---|---|---|---|---|"]
    for m in data["models"]:
        for mb, p in m["torch_pieces"].items():
            lines.append(f"| {m['model']} | {mb} | " + " | ".join(
                f"{p[k]['gbps']:.2f}" for k in ("pack", "write", "pack_plus_write", "pack_to_file", "read_copy")) + " |")
    return "\n".join(lines)


def render(out: Path) -> str:
    """Markdown tables of whatever results exist in ``out``."""
    parts = []
    for name, fn in (("grpo", grpo_tables), ("sync", sync_tables)):
        path = out / f"{name}.json"
        if path.exists():
            parts.append(f"### {name} ({path})\n\n{fn(json.loads(path.read_text()))}")
    for name in ("rewards", "curriculum"):
        if (out / f"{name}.json").exists():
            parts.append(f"### {name}: see {out / f'{name}.json'}")
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated: " + ", ".join(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="tiny model only, fewer repeats")
    parser.add_argument("--render-only", action="store_true", help="print tables from existing JSON")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.render_only:
        for name in args.only.split(","):
            print(f"   {name} took {run(name, args.out, args.quick):.0f} s", flush=True)
    print(render(args.out))


if __name__ == "__main__":
    main()
