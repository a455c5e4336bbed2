"""Step metrics reach Ray's Prometheus export (what the Ray dashboard's metrics view reads)."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest
import ray

from rlplat.metrics import MetricsLogger, read_metrics


def test_step_metrics_are_exported_as_ray_gauges(ray_local: None, tmp_path: Path) -> None:
    port = ray.nodes()[0]["MetricsExportPort"]
    logger = MetricsLogger(tmp_path, total_steps=3, start_step=0, progress=False)
    logger.log({"step": 1, "pass_rate": 0.625, "time/step_s": 1.5})
    logger.close()
    assert read_metrics(tmp_path / "metrics.jsonl") == [{"step": 1, "pass_rate": 0.625, "time/step_s": 1.5}]
    deadline = time.time() + 60
    while time.time() < deadline:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        values = [line.rsplit(" ", 1)[1] for line in text.splitlines()
                  if line.startswith("ray_rlplat_pass_rate{")]
        if values:
            assert float(values[-1]) == pytest.approx(0.625)
            assert "ray_rlplat_time_step_s{" in text
            return
        time.sleep(1)
    raise AssertionError("ray_rlplat_pass_rate never appeared on the metrics export port")
