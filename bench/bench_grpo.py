"""GRPO step-time breakdown through the real launcher, against HF ``generate`` on the same batch.

For each model (``--models``), one invocation:

1. builds a randomly initialised Llama of that shape with the char tokenizer (reused if present);
2. runs ``python -m rlplat.launch model.path=DIR stages=[grpo] grpo.total_steps=N ...`` and reads
   its ``metrics.jsonl``: medians over steps 2..N (step 1 includes warm-up) of rollout, reward,
   train and sync time, step time and the engines' tokens/s;
3. after the run's Ray instance is gone, times HF ``generate`` in this process on the same model and
   batch shape (same prompts, ``n`` samples each, same ``max_new_tokens``, temperature 1.0, top_p
   1.0, no top_k, torch on all cores), counting the same tokens (up to and including EOS);
4. measures fp32 matmul GFLOP/s on all cores, giving a compute ceiling on decode tokens/s
   (``GFLOP/s / (2 x non-embedding parameters)``).

Configurations (exactly what runs; everything else is the embedded default):

- ``tiny``: the default's shape (0.8M parameters), default GRPO settings: 32 prompts x 8 samples,
  ``max_new_tokens=48``, global batch 128 (2 optimizer steps), ZeRO-1, reference model, 2
  co-located bundles (2 engines bound to one core each, 2 learner ranks with one thread each).
- ``100m``: hidden 768, 16 layers, 12/4 heads, intermediate 2048 (100.8M parameters); 8 prompts x 4
  samples, ``max_new_tokens=64``, global batch 16 (2 optimizer steps), micro batch 16; otherwise
  as ``tiny``.

Usage::

    python bench/bench_grpo.py                          # both models, 6 steps each (~10 min on 2 cores)
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

from common import (SHAPES, ModelShape, build_model, count_params, machine_info, matmul_gflops, run_launcher,
                    step_medians, summary, write_json)

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

    from rlplat.data.synthetic import split_problems, to_prompt_items

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    _, rl = split_problems(2, 4000, 2000, 0)
    return [item.text for item in to_prompt_items(rl[:count], tok)]


def hf_generate(model_dir: Path, prompts: list[str], n: int, max_new_tokens: int, threads: int,
                repeats: int) -> dict[str, Any]:
    """HF ``generate`` tokens/s on ``len(prompts) x n`` sequences (sampling, temperature 1.0).

    ``tokens_per_s`` counts each sequence's tokens up to and including its EOS (what the engine's
    ``tokens/generated`` counts); ``padded_tokens_per_s`` counts the whole padded batch, which is
    what HF actually computes.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(str(model_dir), padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    inputs = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    eos = tok.eos_token_id
    useful, padded, times = [], [], []
    with torch.inference_mode():
        for r in range(repeats + 1):  # the first call is a warm-up
            torch.manual_seed(r)
            start = time.perf_counter()
            out = model.generate(**inputs, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                 max_new_tokens=max_new_tokens, num_return_sequences=n,
                                 pad_token_id=tok.pad_token_id, eos_token_id=eos)
            elapsed = time.perf_counter() - start
            gen = out[:, inputs["input_ids"].shape[1]:]
            if r == 0:
                continue
            times.append(elapsed)
            useful.append(int(sum(_length_to_eos(row.tolist(), eos) for row in gen)))
            padded.append(gen.numel())
    return {"threads": threads, "sequences": len(prompts) * n, "seconds": summary(times),
            "tokens_per_s": summary([u / t for u, t in zip(useful, times)]),
            "padded_tokens_per_s": summary([p / t for p, t in zip(padded, times)]),
            "mean_length": sum(useful) / len(useful) / (len(prompts) * n)}


def _length_to_eos(row: list[int], eos: int) -> int:
    return row.index(eos) + 1 if eos in row else len(row)


def bench_model(shape: ModelShape, root: Path, steps: int, hf_repeats: int) -> dict[str, Any]:
    """Launcher run plus HF and compute-ceiling references for one model."""
    model_dir = build_model(shape, root / "models")
    params = count_params(model_dir)
    overrides = launcher_overrides(shape.name, model_dir, steps)
    load_start = os.getloadavg()
    lines = run_launcher(root / f"run_{shape.name}", overrides)
    medians = step_medians(lines)
    batch = batch_shape(shape.name)
    threads = os.cpu_count() or 1
    hf = hf_generate(model_dir, rl_prompts(model_dir, batch["prompts"]), batch["samples"],
                     batch["max_new_tokens"], threads, hf_repeats)
    gflops = matmul_gflops(threads=threads)
    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    non_embedding = params - 2 * shape.hidden_size * vocab  # embed_tokens and lm_head (untied)
    engine_tps = medians["tokens_per_s"]["median"]
    return {
        "model": shape.name, "params": params, "batch": batch,
        "command": "python -m rlplat.launch " + " ".join(overrides),
        "steps": steps, "per_step": [{k: m.get(k) for k in ("step", "time/step_s", "time/rollout_s",
                                                             "time/reward_s", "time/train_s", "time/sync_s",
                                                             "tokens_per_s")} for m in lines],
        "medians": medians, "hf_generate": hf, "matmul_gflops": gflops,
        "compute_ceiling_tokens_per_s": gflops * 1e9 / (2 * non_embedding),
        "engine_vs_hf": engine_tps / hf["tokens_per_s"]["median"],
        "loadavg": {"start": load_start, "end": os.getloadavg()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,100m", help="comma-separated: tiny, 100m")
    parser.add_argument("--steps", type=int, default=6, help="GRPO steps per run (step 1 is not counted)")
    parser.add_argument("--hf-repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="models and run directories (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="rlplat-bench-grpo-"))
    result: dict[str, Any] = {"machine": machine_info(), "workdir": str(root), "models": []}
    for name in args.models.split(","):
        result["models"].append(bench_model(SHAPES[name], root, args.steps, args.hf_repeats))
    result["machine"]["loadavg_end"] = os.getloadavg()
    write_json(args.json, result)


if __name__ == "__main__":
    main()
