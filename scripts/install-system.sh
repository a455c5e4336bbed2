#!/usr/bin/env bash
# System packages for monitoring and its tests, from Debian: prometheus (make monitor) and
# chromium (the dashboard browser test). Needs root and apt-get; otherwise says what to install.
# Called by .ci/run; idempotent.
set -euo pipefail
missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "[install-system] installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "[install-system] missing ${missing[*]}: install them with your package manager" \
       "(Debian/Ubuntu: apt-get install ${missing[*]}); the tests that need them are skipped" >&2
fi
