"""A pipeline stage as a Ray job: submitted through the Jobs API, followed, and its end mapped to
what the launcher reports.

The job's entrypoint is ``python -m rlplat.stages.job_entry RUN_DIR STAGE HASH JOB_ID --address
GCS`` in the launcher's working directory (relative paths in the config keep their meaning) with
the launcher's interpreter. Its submission id reads ``rlplat-<run>-<stage>-<hash>-<time>`` and its
metadata carries run, run directory, experiment, stage and config hash, which is what the
dashboard's Jobs page shows. The job's output is streamed to the console while it runs and copied
to ``stages/<name>/job.log``.

A stop request (SIGTERM/SIGINT to the launcher) is passed on with ``stop_job``: Ray sends the job
SIGTERM, the stage stops at its next safe point and checkpoints (``faults.preempt_grace_s``), and
Ray is told to wait that long before it kills (``RAY_JOB_STOP_WAIT_TIME_S`` of the job's supervisor).
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

import ray

from rlplat.config.errors import ConfigError
from rlplat.config.schema import Config
from rlplat.runtime.signals import Preempted
from rlplat.stages.base import StageManifest, config_error_path, read_manifest, stage_dir
from rlplat.stages.exits import EXIT_CONFIG, EXIT_PREEMPTED, StageFailed, read_config_error

_POLL_S = 1.0


def run_stage_job(dashboard_url: str, cfg: Config, run_dir: Path, name: str, resume: bool,
                  config_hash: str) -> StageManifest:
    """Submit stage ``name`` as a Ray job, follow it to its end and return its manifest.

    Raises:
        StageFailed: the job failed (its log path and exit code in the message).
        ConfigError: the job refused its config (exit code 2; the error it left in
            ``stages/<name>/error.json``).
        Preempted: the job was stopped (a stop request, passed on to it).
    """
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(dashboard_url)
    job_id = f"rlplat-{run_dir.name}-{name}-{config_hash[:8]}-{int(time.time())}".replace(":", "_")
    # The job joins this cluster by its GCS address: Ray's own RAY_ADDRESS for jobs names the
    # newest cluster started on the machine, which is another one when two run side by side.
    entry = [sys.executable, "-m", "rlplat.stages.job_entry", str(run_dir.resolve()), name, config_hash, job_id,
             "--address", ray.get_runtime_context().gcs_address]
    if resume:
        entry.append("--resume")
    config_error_path(run_dir, name).unlink(missing_ok=True)  # an earlier attempt's refusal is not this job's
    grace = int(cfg.faults.preempt_grace_s + cfg.timeouts.checkpoint_s)
    _submit(client, cfg.timeouts.actor_start_s,
            entrypoint=f"cd {shlex.quote(os.getcwd())} && exec {shlex.join(entry)}", submission_id=job_id,
            entrypoint_num_cpus=0, runtime_env={"env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": str(grace)}},
            metadata={"run": run_dir.name, "run_dir": str(run_dir.resolve()), "experiment": cfg.experiment,
                      "stage": name, "config_hash": config_hash})
    print(f"[rlplat] stage {name}: Ray job {job_id} (dashboard {dashboard_url}/#/jobs)", flush=True)
    status = _follow(client, job_id)
    log_path = stage_dir(run_dir, name) / "job.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(client.get_job_logs(job_id))
    info = client.get_job_info(job_id)
    code = info.driver_exit_code
    if status == JobStatus.SUCCEEDED:
        manifest = read_manifest(run_dir, name)
        if manifest is None or manifest.config_hash != config_hash:
            raise StageFailed(name, job_id, code, log_path)
        return manifest
    if status == JobStatus.STOPPED or code == EXIT_PREEMPTED:
        raise Preempted(f"stage {name} stopped (Ray job {job_id}); it checkpointed what was consistent "
                        f"(its log: {log_path}). Continue with: python -m rlplat.launch resume={run_dir}")
    if code == EXIT_CONFIG:
        raise job_config_error(run_dir, name, log_path)
    raise StageFailed(name, job_id, code, log_path)


def job_config_error(run_dir: Path, name: str, log_path: Path) -> ConfigError:
    """The ``ConfigError`` stage ``name``'s job ended on (exit code 2), as it recorded it in
    ``stages/<name>/error.json``; a job that exited 2 without recording one (its command line was
    refused) is reported with its log."""
    return read_config_error(config_error_path(run_dir, name)) or ConfigError(
        "stages", f"stage {name}'s Ray job exited with code 2 without recording a configuration error.",
        f"read its log, {log_path}.")


def _submit(client: Any, timeout_s: float, **job: Any) -> None:
    """Submit a job, waiting (up to ``timeout_s``) for the node's dashboard agent, which a fresh
    Ray instance starts a few seconds after ``ray.init`` returns."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.submit_job(**job)
            return
        except RuntimeError as err:
            if "No available agent" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(_POLL_S)


def _follow(client: Any, job_id: str) -> Any:
    """Stream the job's new output to the console until it ends; a SIGTERM/SIGINT meanwhile is
    passed on to the job (``stop_job``), which is then followed to its end."""
    shown, stopping = 0, False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            print(f"[rlplat] {signal.Signals(signum).name}: stopping the stage's job {job_id}", flush=True)
            client.stop_job(job_id)

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            status = client.get_job_status(job_id)
            text = client.get_job_logs(job_id)
            if len(text) > shown:
                sys.stdout.write(text[shown:])
                sys.stdout.flush()
                shown = len(text)
            if status.is_terminal():
                return status
            time.sleep(_POLL_S)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
