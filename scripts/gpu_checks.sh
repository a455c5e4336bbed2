#!/usr/bin/env bash
# The GPU checks (tests/gpu; docs/gpu.md): run from a checkout on a CUDA machine.
#   bash scripts/gpu_checks.sh [pytest arguments]
# Needs python with torch (CUDA), transformers and pytest; DeepSpeed is optional (the learner's
# engine tests skip without it); vLLM, Ray and Hydra are not needed. Installs nothing and needs no
# install of rlplat: the checkout is put on PYTHONPATH. PYTHON chooses the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# The checkout first on the path (no install); DeepSpeed on its CUDA accelerator (the CPU suite's
# tests/conftest.py would otherwise choose cpu).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export DS_ACCELERATOR=cuda

# What this machine has, said before anything runs; a missing requirement stops here, named.
"$PY" - <<'EOF'
import importlib
import sys

missing = []
for name in ("torch", "transformers", "pytest"):
    try:
        importlib.import_module(name)
    except ImportError as err:
        missing.append(f"{name} ({err})")
if missing:
    sys.exit("gpu_checks: missing " + ", ".join(missing) + "; install them (pip install torch transformers pytest)")
import torch
import transformers

print(f"gpu_checks: python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"transformers {transformers.__version__}")
if torch.cuda.is_available():
    print(f"gpu_checks: {torch.cuda.device_count()} GPU(s), the first a {torch.cuda.get_device_name(0)}")
else:
    print("gpu_checks: torch.cuda.is_available() is False: every check will be skipped")
try:
    import deepspeed
    print(f"gpu_checks: DeepSpeed {deepspeed.__version__}")
except ImportError as err:
    print(f"gpu_checks: no DeepSpeed ({err}): the learner's engine tests will be skipped")
EOF

# -p no:cacheprovider: write nothing into the checkout.
exec "$PY" -m pytest tests/gpu -m gpu -v -p no:cacheprovider "$@"
