"""Monitoring against a real Prometheus: a tiny run's tagged ``rlplat_`` series are scraped through
Ray's service-discovery file (``scripts/monitor.sh``, the script ``make monitor`` runs) and every
query of every Grafana panel (``monitoring/grafana/rlplat_dashboard.json``) returns data.

The run is the session's ``monitored_run`` (tests/integration/conftest.py): ``prefilter -> grpo`` with
a progressive curriculum, dynamic sampling and the TIS mismatch correction, so that the curriculum
and mismatch panels have something to show, and with the dashboard on (Ray writes the
service-discovery file only then; the stages run as Ray jobs). Its pass rates go through the shared
store actor (``curriculum.shared_store``), whose hand-off is checked here too.
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from launch_helpers import log_path
from rlplat.metrics import read_metrics

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("prometheus") is None,
                                 reason="prometheus is not installed (scripts/install-system.sh installs it)")]
ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "monitoring" / "grafana" / "rlplat_dashboard.json"



def _api(port: int, path: str, **params: Any) -> Any:
    url = f"http://127.0.0.1:{port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]


def _range(port: int, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = _api(port, "query_range", query=expr, start=start, end=end, step="1s")["result"]
    return result


def test_tagged_series_reach_prometheus_with_the_logged_values(prometheus: int,
                                                              monitored_run: tuple[Path, float, float, str]) -> None:
    run_dir, start, end, _ = monitored_run
    rows = read_metrics(run_dir / "metrics.jsonl")
    series = _range(prometheus, 'ray_rlplat_weights_version{run="mon_run"}', start, end)
    assert series, "no ray_rlplat_weights_version series for this run"
    labels = series[0]["metric"]
    assert (labels["run"], labels["stage"], labels["experiment"]) == ("mon_run", "grpo", "tiny")
    seen = {float(v) for s in series for _, v in s["values"]}
    assert seen <= {float(r["weights/version"]) for r in rows} and float(rows[-1]["weights/version"]) in seen
    # From the actors themselves: every generated token was counted by a rollout worker, every
    # scored sample by the reward scorer (the last scrape may precede the last step).
    tokens = _range(prometheus, 'sum(ray_rlplat_generated_tokens_total{run="mon_run"})', start, end)
    counted = max(float(v) for _, v in tokens[0]["values"])
    assert counted >= rows[0]["tokens/generated"] > 0
    workers = _range(prometheus, 'count by (WorkerId) (ray_rlplat_response_length_tokens_count{run="mon_run"})',
                     start, end)
    assert len(workers) >= 2, "response lengths come from each rollout worker"
    latency = _range(prometheus, 'sum(ray_rlplat_verifier_latency_seconds_count{run="mon_run"})', start, end)
    assert max(float(v) for _, v in latency[0]["values"]) > 0


def test_every_grafana_panel_query_returns_data(prometheus: int, monitored_run: tuple[Path, float, float, str]) -> None:
    _, start, end, _ = monitored_run
    dashboard = json.loads(DASHBOARD.read_text())
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"run", "stage"} <= names
    empty = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$run", "mon_run").replace("$stage", "grpo")
            if not _range(prometheus, expr, start, end):
                empty.append(f"{panel['title']}: {target['expr']}")
    assert not empty, "panels that would show nothing:\n" + "\n".join(empty)
    assert len(dashboard["panels"]) >= 12


def test_stage_progress_reaches_the_console_through_the_job_logs(monitored_run: tuple[Path, float, float, str]) -> None:
    """Each stage runs as a Ray job, whose output is not a terminal: plain lines, no bar redraws."""
    run_dir, _, _, _ = monitored_run
    for stage, unit in (("grpo", "step"), ("prefilter", "prompt")):
        job_log = (run_dir / "stages" / stage / "job.log").read_text()
        done = [line for line in job_log.splitlines() if line.startswith(f"[{stage}] {unit} ") and "(100%)" in line]
        assert "\r" not in job_log and done, job_log[-2000:]
    console = log_path(run_dir).read_text()
    assert sum(line.startswith("[grpo] step ") for line in console.splitlines()) == 4


def test_the_ray_dashboard_reaches_prometheus(monitored_run: tuple[Path, float, float, str]) -> None:
    """``RAY_PROMETHEUS_HOST`` hooks the dashboard's Metrics view to the Prometheus of ``make monitor``."""
    assert "prometheus running" in monitored_run[3], monitored_run[3]


def test_grpo_seeds_its_curriculum_from_the_prefilters_shared_store(monitored_run: tuple[Path, float, float, str]) -> None:
    """``curriculum.shared_store``: the prefilter's job put its table in the run's store actor, and
    the GRPO job (another driver) seeded its curriculum from it."""
    run_dir = monitored_run[0]
    table = (run_dir / "prefilter" / "pass_rates.jsonl").read_text().splitlines()
    grpo_log = (run_dir / "stages" / "grpo" / "job.log").read_text()
    assert f"curriculum: store seeded from the shared store ({len(table)} prompts)" in grpo_log
