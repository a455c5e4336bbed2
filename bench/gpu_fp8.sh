#!/usr/bin/env bash
# FP8 against BF16 generation on one NVIDIA GPU, same model and prompts (docs/fp8.md).
#
# Prepared for a machine with a CUDA GPU and GPU vLLM (`make setup EXTRA=gpu` or an environment with
# vllm, deepspeed and torch for CUDA). It builds the ~100M Llama of bench/common.py, runs five GRPO
# steps of the embedded default in BF16 and in FP8 (vLLM quantization="fp8", FP8 weight sync), and
# prints the medians over steps 2-5 of generation tokens/s and the mismatch metrics of each.
#
#   bash bench/gpu_fp8.sh [WORKDIR]        # default WORKDIR: runs/gpu_fp8
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WORK=${1:-runs/gpu_fp8}
mkdir -p "$WORK"
MODEL=$($PY - "$WORK" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, "bench")
from common import build_model
print(build_model("100m", Path(sys.argv[1]) / "models"))
PY
)
COMMON=(model.path="$MODEL" stages=[grpo] cluster.device=gpu model.dtype=bfloat16 cluster.num_nodes=1
        cluster.devices_per_node=1 grpo.total_steps=5 cluster.dashboard=false "grpo.mismatch.guard_kl=null")
for precision in full fp8; do
  $PY -m rlplat.launch "${COMMON[@]}" rollout.precision=$precision hydra.run.dir="$WORK/$precision"
done
$PY - "$WORK" <<'PY'
import json, statistics, sys
from pathlib import Path
keys = ("tokens_per_s", "time/rollout_s", "mismatch/kl", "mismatch/ratio_max", "sync/bytes")
print("| precision | " + " | ".join(keys) + " |")
print("|---" * (len(keys) + 1) + "|")
for precision in ("full", "fp8"):
    rows = [json.loads(l) for l in (Path(sys.argv[1]) / precision / "metrics.jsonl").read_text().splitlines()]
    med = {k: statistics.median(r[k] for r in rows[1:]) for k in keys}
    print(f"| {precision} | " + " | ".join(f"{med[k]:.4g}" for k in keys) + " |")
PY
