"""Stages as Ray jobs: submitted through the real Jobs API of the run's own dashboard, listed there
with their metadata, skipped on a re-run when their manifest still stands, and a failing stage
stopping the pipeline with its log path (one run: two stages pass, the third fails). Without a
dashboard the stages run in the driver: the reference run shows it (test_e2e)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from launch_helpers import finish, free_port, plugin_env, resume, start

pytestmark = pytest.mark.slow
PASS_ON = "pipeline_stages:PassOnStage"
FIRST = "pipeline_stages:FirstStage"  # two quick stages: what is tested is the jobs, not a stage's work



def _manifest(run: Path, stage: str) -> dict[str, Any]:
    return dict(json.loads((run / "stages" / stage / "manifest.json").read_text()))


def _jobs_seen_while_running(proc: Any, port: int, run: Path) -> dict[str, dict[str, str]]:
    """Poll the dashboard's Jobs API until the launcher exits: stage -> metadata of this run's jobs."""
    from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available
    from ray.job_submission import JobSubmissionClient

    # The launcher's local Ray uses token auth (~/.ray/auth_token); a client in a process that has
    # not started Ray itself sends the token only once auth is switched on here (Ray 2.60).
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    seen: dict[str, dict[str, str]] = {}
    client = None
    while proc.poll() is None:
        try:
            client = client or JobSubmissionClient(f"http://127.0.0.1:{port}")
            for job in client.list_jobs():
                if (job.metadata or {}).get("run_dir") == str(run.resolve()):
                    seen[job.metadata["stage"]] = {**job.metadata, "submission_id": job.submission_id}
        except Exception:  # noqa: BLE001 - the dashboard is not up yet, or already gone
            client = None
        time.sleep(1.0)
    return seen


FAILING = "pipeline_stages:FailingStage"


def test_stages_run_as_ray_jobs_a_failing_one_stops_the_pipeline_and_a_rerun_skips_the_done_ones(
        tmp_path: Path) -> None:
    """Two stages run as jobs, the third fails: the pipeline stops there with its log path and never
    starts the fourth. The re-run skips the two whose manifests still stand and fails again at the
    third (one launch each: what a user who fixed nothing would see)."""
    run, port = tmp_path / "run", free_port()
    proc = start(run, f"stages=[{FIRST},{PASS_ON},{FAILING},grpo]", "cluster.dashboard=true",
                 f"cluster.dashboard_port={port}", env=plugin_env())
    seen = _jobs_seen_while_running(proc, port, run)
    rc, out = finish(proc, run)
    assert rc == 1, out[-3000:]
    for stage in (FIRST, PASS_ON):
        manifest = _manifest(run, stage)
        assert manifest["runner"] == "ray_job" and manifest["job_id"] == seen[stage]["submission_id"]
        assert seen[stage]["config_hash"] == manifest["config_hash"] and seen[stage]["run"] == "run"
        assert "Running entrypoint" in (run / "stages" / stage.replace("/", "_") / "job.log").read_text()
    assert _manifest(run, PASS_ON)["metrics"] == {"pass_on/upstream": 1}
    assert "stage first done" in out  # each stage prints its figures as it ends (its own name)
    _assert_failed_at_the_failing_stage(run, out)
    before = {s: _manifest(run, s) for s in (FIRST, PASS_ON)}

    rc, out = resume(run, env=plugin_env())
    assert rc == 1, out[-3000:]
    assert out.count("up to date") >= 2
    assert {s: _manifest(run, s) for s in (FIRST, PASS_ON)} == before  # neither ran again
    _assert_failed_at_the_failing_stage(run, out)


def _assert_failed_at_the_failing_stage(run: Path, out: str) -> None:
    log = run / "stages" / FAILING / "job.log"
    assert f"its log: {log}" in out and "boom: the failing test stage" in log.read_text()
    assert "boom: the failing test stage" in (run / "error.log").read_text()
    assert not (run / "stages" / "grpo").exists()
