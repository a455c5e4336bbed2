"""Monitoring against a real Prometheus: a tiny run's tagged ``rlplat_`` series are scraped through
Ray's service-discovery file (``scripts/monitor.sh``, the script ``make monitor`` runs) and every
query of every Grafana panel (``monitoring/grafana/rlplat_dashboard.json``) returns data.

The run is ``prefilter -> grpo`` with a progressive curriculum and the TIS mismatch correction, so
that the curriculum and mismatch panels have something to show, and with the dashboard on (Ray
writes the service-discovery file only then; the stages run as Ray jobs). Its pass rates go
through the shared store actor (``curriculum.shared_store``), whose hand-off is checked here too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from launch_helpers import FAST, finish, free_port, log_path, plugin_env, wait_until_serving
from launch_helpers import start as start_launcher
from rlplat.metrics import read_metrics

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("prometheus") is None,
                                 reason="prometheus is not installed (scripts/install-system.sh installs it)")]
ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "monitoring" / "grafana" / "rlplat_dashboard.json"
RUN = ["stages=[prefilter,grpo]", "curriculum.name=progressive", "prefilter.samples=4", "grpo.eval_every=2",
       "grpo.eval_prompts=8", "grpo.eval_samples=2", "reward.components={coin_flip: 1.0}", "reward.modules=[coin_rewards]",
       "grpo.mismatch.mode=tis", "grpo.old_logprobs=learner", "cluster.dashboard=true", "curriculum.shared_store=true",
       # One learner beside one engine: the subject is what reaches Prometheus, not the ranks.
       "cluster.devices_per_node=1"]



def _api(port: int, path: str, **params: Any) -> Any:
    url = f"http://127.0.0.1:{port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """``scripts/monitor.sh`` on a free loopback port, scraping every second."""
    port, data = free_port(), tmp_path_factory.mktemp("prometheus")
    env = {**os.environ, "PROM_PORT": str(port), "PROM_DATA": str(data), "SCRAPE_INTERVAL": "1s"}
    proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "monitor.sh")], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(data / "prometheus.log", "w"), start_new_session=True)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/-/ready", proc, 60, "prometheus did not start (prometheus.log)")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def monitored_run(prometheus: int, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, float, str]:
    """The run's directory, the Unix times it started and ended, and what the Ray dashboard's
    Prometheus health check answered while the run was on (the launcher sets
    ``RAY_PROMETHEUS_HOST``, which Ray's dashboard reads for its Metrics view)."""
    run_dir = tmp_path_factory.mktemp("monitored") / "mon_run"
    t0 = time.time()
    fast = [a for a in FAST if not a.startswith("cluster.dashboard=")]
    env = {**plugin_env(), "RAY_PROMETHEUS_HOST": f"http://127.0.0.1:{prometheus}"}
    proc = start_launcher(run_dir, *fast, *RUN, fast=False, env=env)
    health = ""
    while proc.poll() is None and "prometheus running" not in health:
        health = _dashboard_health()
        time.sleep(1)
    rc, out = finish(proc, run_dir)
    assert rc == 0, out[-3000:]
    return run_dir, t0, time.time(), health


def _dashboard_health() -> str:
    """The body of the dashboard's ``/api/prometheus_health`` with Ray's auth token, or the error."""
    token = (Path.home() / ".ray" / "auth_token").read_text().strip()
    req = urllib.request.Request("http://127.0.0.1:8265/api/prometheus_health",
                                 headers={"authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.read().decode()
    except OSError as err:
        return str(err)


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
