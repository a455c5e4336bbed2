#!/usr/bin/env bash
# Start Prometheus, scraping every Ray node of the local cluster (`make monitor`; docs/monitoring.md).
#   PROM_HOST (127.0.0.1)  PROM_PORT (9090)  PROM_DATA (runs/prometheus)  RAY_TMP (/tmp/ray)
#   SCRAPE_INTERVAL (5s)
# Binds to loopback unless PROM_HOST says otherwise; reach it from a laptop through an SSH
# port-forward (docs/monitoring.md). Runs in the foreground; Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
PROM_HOST="${PROM_HOST:-127.0.0.1}"
PROM_PORT="${PROM_PORT:-9090}"
PROM_DATA="${PROM_DATA:-runs/prometheus}"
RAY_TMP="${RAY_TMP:-/tmp/ray}"
SCRAPE_INTERVAL="${SCRAPE_INTERVAL:-5s}"
if ! command -v prometheus >/dev/null 2>&1; then
  echo "prometheus is not installed: run scripts/install-system.sh (Debian package prometheus)" >&2
  exit 2
fi
mkdir -p "$PROM_DATA"
sed -e "s|@RAY_TMP@|$RAY_TMP|" -e "s|@SCRAPE_INTERVAL@|$SCRAPE_INTERVAL|" monitoring/prometheus.yml \
  > "$PROM_DATA/prometheus.yml"
echo "[monitor] Prometheus on http://$PROM_HOST:$PROM_PORT scraping the Ray nodes listed in" \
     "$RAY_TMP/prom_metrics_service_discovery.json"
exec prometheus --config.file="$PROM_DATA/prometheus.yml" --storage.tsdb.path="$PROM_DATA/data" \
  --web.listen-address="$PROM_HOST:$PROM_PORT"
