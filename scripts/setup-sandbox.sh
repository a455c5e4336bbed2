#!/usr/bin/env bash
# bubblewrap (bwrap), which isolates the code reward's sandbox (docs/rewards.md). Called by setup.sh;
# runs alone too: `bash scripts/setup-sandbox.sh`. Idempotent.
#   - bwrap on PATH: nothing to do.
#   - otherwise, as root with apt-get: install the bubblewrap package.
#   - still missing: a warning (code rewards run with reduced isolation), except under CI=true, where
#     it is an error (exit 1): CI must test the sandbox production uses, not skip half of its tests.
set -euo pipefail

if command -v bwrap >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "[setup] installing bubblewrap (code-reward sandbox)"
  if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap) >/dev/null 2>&1; then
    echo "[setup] apt-get could not install bubblewrap" >&2
  fi
fi
if command -v bwrap >/dev/null 2>&1; then
  exit 0
fi
how="install it with your package manager (Debian/Ubuntu: apt-get install bubblewrap)"
if [ "${CI:-}" = "true" ]; then
  echo "[setup] ERROR: bubblewrap (bwrap) is missing and CI=true: the code-reward sandbox would run with" \
       "reduced isolation and its bubblewrap tests would not run; $how" >&2
  exit 1
fi
echo "[setup] WARNING: bubblewrap (bwrap) is missing; code rewards will run with reduced isolation; $how" >&2
