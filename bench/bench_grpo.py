"""GRPO step-time breakdown through the real launcher, against HF ``generate`` on the same batch.

For each model (``--models``), one invocation:

1. builds a randomly initialised Llama of that shape with the char tokenizer (reused if present);
2. runs ``python -m rlplat.launch model.path=DIR stages=[grpo] grpo.total_steps=N ...`` and reads
   its ``metrics.jsonl``: medians over steps 2..N (step 1 includes warm-up) of rollout, reward,
   train and sync time, step time and the engines' tokens/s;
3. after the run's Ray instance is gone, times HF ``generate`` on the same model and batch shape
   (same prompts, ``n`` samples each, same ``max_new_tokens``, temperature 1.0, top_p 1.0, no
   top_k), counting the same tokens (up to and including EOS), in two layouts: one process with one
   thread, and two processes with one thread each and half the prompts each (the engines' layout;
   a single process with two OpenMP threads is available with ``--hf-layouts 1x2`` but collapses
   on a loaded machine, where each thread waits for the other at every parallel region);
4. measures two physical ceilings on the engines' decode tokens/s: compute (one core's fp32 matmul
   GFLOP/s x 2 engines / 2 FLOPs per non-embedding parameter and token) and memory (every decode
   step of an engine streams its fp32 weights once: ``sequences x read GB/s / (2 engines x weight
   bytes)``, with the read bandwidth of ``tensor.sum()`` over 1 GiB).

Configurations (exactly what runs; everything else is the embedded default):

- ``tiny``: the default's shape (0.8M parameters), default GRPO settings: 32 prompts x 8 samples,
  ``max_new_tokens=48``, global batch 128 (2 optimizer steps), ZeRO-1, reference model, 2
  co-located bundles (2 engines bound to one core each, 2 learner ranks with one thread each).
- ``100m``: hidden 768, 16 layers, 12/4 heads, intermediate 2048 (100.8M parameters); 8 prompts x 4
  samples, ``max_new_tokens=64``, global batch 16 (2 optimizer steps), micro batch 16; otherwise
  as ``tiny``.

Usage::

    python bench/bench_grpo.py                          # both models, 6 steps each (10-15 min on 2 cores)
    python bench/bench_grpo.py --models tiny --steps 8 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    SHAPES,
    build_model,
    count_params,
    machine_info,
    matmul_gflops,
    read_bandwidth,
    run_launcher,
    save_json,
    step_medians,
    summary,
    write_json,
)

# Launcher overrides per model, on top of model.path / stages / total_steps.
OVERRIDES: dict[str, list[str]] = {
    "tiny": [],
    "100m": ["grpo.prompts_per_step=8", "grpo.samples_per_prompt=4", "grpo.global_batch=16",
             "learner.micro_batch_size=16", "rollout.sampling.max_new_tokens=64"],
}
# Defaults of conf/config.yaml that the HF comparison must mirror.
DEFAULT_BATCH = {"prompts": 32, "samples": 8, "max_new_tokens": 48}


def batch_shape(name: str) -> dict[str, int]:
    """Prompts, samples per prompt and max new tokens of a configuration (from its overrides)."""
    shape = dict(DEFAULT_BATCH)
    keys = {"grpo.prompts_per_step": "prompts", "grpo.samples_per_prompt": "samples",
            "rollout.sampling.max_new_tokens": "max_new_tokens"}
    for item in OVERRIDES[name]:
        key, value = item.split("=", 1)
        if key in keys:
            shape[keys[key]] = int(value)
    return shape


def launcher_overrides(name: str, model_dir: Path, steps: int) -> list[str]:
    """The full override list of one benchmark run (printed in the results)."""
    return [f"model.path={model_dir}", "stages=[grpo]", f"grpo.total_steps={steps}", "checkpoint.every=1000",
            "cluster.dashboard=false", *OVERRIDES[name]]


def rl_prompts(model_dir: Path, count: int) -> list[str]:
    """The first ``count`` GRPO prompts of the built-in task, rendered with the chat template."""
    from transformers import AutoTokenizer

    from rlplat.config.schema import SyntheticTaskConfig
    from rlplat.data.synthetic import split_problems, to_prompt_items

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    _, rl = split_problems(SyntheticTaskConfig(), 0)
    return [item.text for item in to_prompt_items(rl[:count], tok)]


def _hf_worker(model_dir: str, prompts: list[str], n: int, max_new_tokens: int, threads: int, repeats: int,
               rank: int, barrier: Any, results: Any) -> None:
    """One HF ``generate`` process: warm up, then ``repeats`` timed calls, each started on the barrier
    so that the processes of a layout run side by side; puts ``(repeat, useful, padded, seconds)``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    inputs = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    eos = tok.eos_token_id
    with torch.inference_mode():
        for r in range(repeats + 1):  # round 0, 4 tokens long, is a warm-up
            torch.manual_seed(1000 * r + rank)
            barrier.wait()
            start = time.perf_counter()
            out = model.generate(**inputs, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                 max_new_tokens=max_new_tokens if r else 4, num_return_sequences=n,
                                 pad_token_id=tok.pad_token_id, eos_token_id=eos)
            elapsed = time.perf_counter() - start
            gen = out[:, inputs["input_ids"].shape[1]:]
            if r:
                useful = sum(_length_to_eos(row.tolist(), eos) for row in gen)
                results.put((r, useful, gen.numel(), elapsed))


def hf_generate(model_dir: Path, prompts: list[str], n: int, max_new_tokens: int, processes: int, threads: int,
                repeats: int) -> dict[str, Any]:
    """HF ``generate`` tokens/s on ``len(prompts) x n`` sequences (sampling, temperature 1.0), the
    prompts split over ``processes`` processes of ``threads`` torch threads each.

    ``processes=2, threads=1`` is the engines' layout (two engines, one core each). A repeat's time
    is its slowest process's; ``tokens_per_s`` counts each sequence's tokens up to and including
    its EOS (what the engine's ``tokens/generated`` counts); ``padded_tokens_per_s`` counts the whole
    padded batch, which is what HF computes.
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    shares = [prompts[i::processes] for i in range(processes)]
    procs = [ctx.Process(target=_hf_worker, args=(str(model_dir), share, n, max_new_tokens, threads, repeats,
                                                  rank, barrier, results))
             for rank, share in enumerate(shares)]
    for p in procs:
        p.start()
    rows = [results.get(timeout=3600) for _ in range(processes * repeats)]
    for p in procs:
        p.join()
    useful, padded, times = [], [], []
    for r in range(1, repeats + 1):
        mine = [row for row in rows if row[0] == r]
        useful.append(sum(row[1] for row in mine))
        padded.append(sum(row[2] for row in mine))
        times.append(max(row[3] for row in mine))
    return {"processes": processes, "threads": threads, "sequences": len(prompts) * n, "seconds": summary(times),
            "tokens_per_s": summary([u / t for u, t in zip(useful, times)]),
            "padded_tokens_per_s": summary([p / t for p, t in zip(padded, times)]),
            "mean_length": sum(useful) / len(useful) / (len(prompts) * n)}


def _length_to_eos(row: list[int], eos: int) -> int:
    return row.index(eos) + 1 if eos in row else len(row)


def ceilings(model_dir: Path, params: int, hidden_size: int, sequences: int, engines: int = 2) -> dict[str, Any]:
    """Physical ceilings on the engines' decode tokens/s, from rates measured now.

    ``engines`` is the default's one engine per bundle (``cluster.devices_per_node=2``), each
    computing on one core.
    """
    gflops_1 = matmul_gflops(threads=1)
    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    non_embedding = params - 2 * hidden_size * vocab  # embed_tokens and lm_head (untied)
    read_gbps = max(read_bandwidth(threads=t)["median"] for t in sorted({1, os.cpu_count() or 1}))
    weight_bytes = 4 * params  # fp32
    return {
        "matmul_gflops_1thread": gflops_1, "read_gbps": read_gbps,
        # engines x one core's matmul rate / 2 FLOPs per non-embedding parameter and token.
        "compute_ceiling_tokens_per_s": engines * gflops_1 * 1e9 / (2 * non_embedding),
        # Every decode step of an engine streams its weights once for its share of the sequences:
        # tokens/s <= sequences x bandwidth / (engines x weight bytes). Not binding when the weights
        # fit in the caches (None below 64 MB).
        "memory_ceiling_tokens_per_s": (sequences * read_gbps * 1e9 / (engines * weight_bytes)
                                        if weight_bytes >= 64 << 20 else None),
    }


def bench_model(name: str, root: Path, steps: int, hf_repeats: int,
                hf_layouts: list[tuple[int, int]]) -> dict[str, Any]:
    """Launcher run, then the HF peer and the physical ceilings, for one model."""
    model_dir = build_model(name, root / "models")
    params = count_params(model_dir)
    overrides = launcher_overrides(name, model_dir, steps)
    load_start = os.getloadavg()
    # A fresh run directory each time: the launcher refuses to overwrite a run.
    lines = run_launcher(root / f"run_{name}_{time.strftime('%Y%m%d-%H%M%S')}", overrides)
    medians = step_medians(lines)
    batch = batch_shape(name)
    prompts = rl_prompts(model_dir, batch["prompts"])
    hf = {f"{p}x{t}": hf_generate(model_dir, prompts, batch["samples"], batch["max_new_tokens"], p, t, hf_repeats)
          for p, t in hf_layouts}
    best_hf = max(h["tokens_per_s"]["median"] for h in hf.values())
    per_step_keys = ("step", "time/step_s", "time/rollout_s", "time/reward_s", "time/train_s", "time/sync_s",
                     "tokens_per_s")
    return {
        "model": name, "params": params, "batch": batch,
        "command": "python -m rlplat.launch " + " ".join(overrides), "steps": steps,
        "per_step": [{k: m.get(k) for k in per_step_keys} for m in lines],
        "medians": medians, "hf_generate": hf,
        "engine_vs_best_hf": medians["tokens_per_s"]["median"] / best_hf,
        **ceilings(model_dir, params, SHAPES[name].hidden_size, batch["prompts"] * batch["samples"]),
        "loadavg": {"start": load_start, "end": os.getloadavg()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,100m", help="comma-separated: tiny, 100m")
    parser.add_argument("--steps", type=int, default=6, help="GRPO steps per run (step 1 is not counted)")
    parser.add_argument("--hf-repeats", type=int, default=3)
    parser.add_argument("--hf-layouts", default="1x1,2x1",
                        help="HF generate layouts, PROCESSESxTHREADS, comma-separated (2x1 = the engines' layout; "
                             "1x2 is slow on a loaded machine, where two OpenMP threads wait for each other)")
    parser.add_argument("--workdir", type=Path, default=None, help="models and run directories (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="rlplat-bench-grpo-"))
    layouts = [(int(p), int(t)) for p, t in (x.split("x") for x in args.hf_layouts.split(","))]
    result: dict[str, Any] = {"machine": machine_info(), "workdir": str(root), "models": []}
    for name in args.models.split(","):
        result["models"].append(bench_model(name, root, args.steps, args.hf_repeats, layouts))
        save_json(args.json, result)  # keep finished models if a later one fails
    result["machine"]["loadavg_end"] = os.getloadavg()
    write_json(args.json, result)


if __name__ == "__main__":
    main()
