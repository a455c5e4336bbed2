"""Step metrics reach Ray's Prometheus export (what the Ray dashboard's metrics view reads), tagged
with run, experiment and stage; run totals as counters."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest
import ray

from rlplat.metrics import MetricsLogger, read_metrics
from rlplat.telemetry import MetricTags


def _series(port: int, prefix: str) -> list[str]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_step_metrics_are_exported_as_tagged_ray_metrics(ray_local: None, tmp_path: Path) -> None:
    """Two runs in one Ray instance keep separate series; a run total becomes a counter that grows
    by what each step adds."""
    port = ray.nodes()[0]["MetricsExportPort"]
    for name in ("run_a", "run_b"):
        (tmp_path / name).mkdir()
    loggers = [MetricsLogger(tmp_path / name, "grpo", total_steps=3, start_step=0, progress=False,
                             tags=MetricTags(name, "tiny", "grpo")) for name in ("run_a", "run_b")]
    loggers[0].log({"step": 1, "pass_rate": 0.625, "time/step_s": 1.5, "faults/rollout_restarts": 1.0})
    loggers[0].log({"step": 2, "pass_rate": 0.625, "time/step_s": 1.5, "faults/rollout_restarts": 3.0})
    loggers[1].log({"step": 1, "pass_rate": 0.25, "time/step_s": 2.0, "faults/rollout_restarts": 0.0})
    for logger in loggers:
        logger.close()
    assert read_metrics(tmp_path / "run_b" / "metrics.jsonl") == [
        {"step": 1, "pass_rate": 0.25, "time/step_s": 2.0, "faults/rollout_restarts": 0.0}]
    deadline = time.time() + 60
    while time.time() < deadline:
        rates = _series(port, "ray_rlplat_pass_rate{")
        restarts = _series(port, "ray_rlplat_faults_rollout_restarts_total{")
        if len(rates) >= 2 and restarts:
            by_run = {next(t.split('"')[1] for t in line.split(",") if t.startswith("run=")): float(line.rsplit(" ", 1)[1])
                      for line in rates}
            assert by_run == {"run_a": pytest.approx(0.625), "run_b": pytest.approx(0.25)}
            assert all('experiment="tiny"' in line and 'stage="grpo"' in line for line in rates)
            assert len(restarts) == 1 and 'run="run_a"' in restarts[0] and float(restarts[0].rsplit(" ", 1)[1]) == 3.0
            return
        time.sleep(1)
    raise AssertionError("the tagged rlplat series never appeared on the metrics export port")
