"""Runs the configured stages in order, each starting from the model directory the last produced.

For each stage the driver computes a content hash of what its result depends on (the config
sections the stage reads, its input model, the hashes of the stages before it). A stage whose
manifest (``stages/<name>/manifest.json``) carries that hash and whose output model is still there
is skipped, so a re-run (``resume=DIR``) redoes only what changed, or what had not finished (that
stage continues from its checkpoint). Otherwise the stage runs:

* as a Ray job (``cluster.dashboard=true``, the default): submitted through the Ray Jobs API with
  a readable id and metadata (run, stage, config hash), so the dashboard's Jobs page lists the run's
  stages with their logs (``rlplat.stages.ray_jobs``); the job runs ``rlplat.stages.job_entry``, which
  calls :func:`run_stage` below;
* in the driver (``cluster.dashboard=false``): :func:`run_stage` directly. Same code; the manifest's
  ``runner`` says which.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rlbase import to_plain
from rlplat.config.schema import Config
from rlplat.report.document import write_run_report
from rlplat.runtime.pass_rates import release
from rlplat.stages import STAGES
from rlplat.stages.base import StageContext, StageManifest, read_manifest, stage_dir, write_manifest
from rlplat.stages.held_out import pass_rate_table, with_pass_rate
from rlplat.stages.ray_jobs import run_stage_job

log = logging.getLogger(__name__)
# Fields that say where or how a run happens, not what it computes.
_RUN_LOCAL = ("run_dir", "resume", "dry_run", "experiment", "timeouts", "faults", "cluster.dashboard",
              "cluster.log_to_driver", "cluster.address", "cluster.dashboard_port", "grpo.eval_stages")


def initial_model(cfg: Config, run_dir: Path) -> str:
    """``model.path``, or the Llama of ``model.tiny`` built into the run directory when it is unset."""
    if cfg.model.path:
        return cfg.model.path
    from rlplat.models.tiny import build_tiny_llama

    return str(build_tiny_llama(run_dir / "initial_model", cfg.model.tiny, seed=cfg.seed))


def stage_hash(cfg: Config, name: str, input_model: str, upstream: str) -> str:
    """Content hash of stage ``name``'s inputs: its config sections (all of the config, less the
    run-local fields, for a stage that names none), ``input_model`` and the upstream hash."""
    plain = to_plain(cfg)
    for dotted in _RUN_LOCAL:
        *parents, leaf = dotted.split(".")
        _section(plain, parents).pop(leaf, None)
    sections = getattr(STAGES.resolve(name).target, "config_sections", None)
    picked = {s: _section(plain, s.split(".")) for s in sections} if sections else plain
    payload = json.dumps({"stage": name, "config": picked, "input_model": input_model, "upstream": upstream},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _section(plain: dict[str, Any], keys: list[str]) -> Any:
    for key in keys:
        plain = plain[key]
    return plain


def up_to_date(manifest: StageManifest | None, config_hash: str) -> bool:
    """Whether a stage's earlier manifest still stands: same hash, output model still there."""
    return (manifest is not None and manifest.config_hash == config_hash
            and (Path(manifest.model_path) / "config.json").is_file())


def run_pipeline(cfg: Config, run_dir: Path, resume: bool, dashboard_url: str | None = None) -> str:
    """Run every stage of ``cfg.stages`` (as Ray jobs when ``dashboard_url`` is given); returns the
    last model directory. The run's shared pass-rate store, if any, ends with it."""
    try:
        return _run_stages(cfg, run_dir, resume, dashboard_url)
    finally:
        if cfg.curriculum.shared_store:
            release(run_dir.name)  # the files are the durable record (rlplat.runtime.pass_rates)


def _run_stages(cfg: Config, run_dir: Path, resume: bool, dashboard_url: str | None) -> str:
    model_path, upstream = initial_model(cfg, run_dir), ""
    done: list[StageManifest] = []
    for name in cfg.stages:
        config_hash = stage_hash(cfg, name, model_path, upstream)
        manifest = read_manifest(run_dir, name)
        if up_to_date(manifest, config_hash):
            assert manifest is not None
            log.info("stage %s: up to date (config hash %s), skipped: %s", name, config_hash, manifest.model_path)
        else:
            if manifest is not None:
                log.info("stage %s: its config or input changed since it ran; running it again", name)
            # Only an interrupted stage (no manifest yet) continues from its checkpoint.
            again = resume and manifest is None
            if dashboard_url is None:
                manifest = run_stage(cfg, run_dir, name, again, config_hash)
            else:
                manifest = run_stage_job(dashboard_url, cfg, run_dir, name, again, config_hash)
            print(stage_summary(manifest), flush=True)
        model_path, upstream = manifest.model_path, config_hash
        done.append(manifest)
    if cfg.grpo.eval_stages and len(done) > 1:
        print(pass_rate_table(cfg, done), flush=True)
        write_run_report(run_dir)  # with the table
    return model_path


def run_stage(cfg: Config, run_dir: Path, name: str, resume: bool, config_hash: str, runner: str = "driver",
              job_id: str | None = None) -> StageManifest:
    """Run stage ``name`` of ``cfg.stages`` from the output of the stage before it (whose manifest
    must be written) and write its manifest; the one code path of both runners."""
    index = cfg.stages.index(name)
    upstream = tuple(m for m in (read_manifest(run_dir, n) for n in cfg.stages[:index]) if m is not None)
    if len(upstream) != index:
        raise RuntimeError(f"stage {name} needs the manifests of {', '.join(cfg.stages[:index])} in {run_dir}/stages")
    model_path = upstream[-1].model_path if upstream else initial_model(cfg, run_dir)
    started = time.time()
    stage = STAGES.resolve(name).target()
    # Its directory exists from the start: a run killed inside its first stage can be resumed
    # (``rlplat.runs.prepare_run_dir``), and the stage may keep partial results there.
    stage_dir(run_dir, name).mkdir(parents=True, exist_ok=True)
    manifest = stage.run(StageContext(cfg, run_dir, model_path, resume, upstream, config_hash))
    if cfg.grpo.eval_stages:
        manifest = with_pass_rate(cfg, manifest, upstream)
    manifest = replace(manifest, config_hash=config_hash, runner=runner, job_id=job_id, started_at=started,
                       seconds=time.time() - started)
    write_manifest(run_dir, name, manifest)
    return manifest


def stage_summary(m: StageManifest) -> str:
    """One line per finished stage: its figures, wall time and output."""
    figures = ", ".join(f"{k} {v:.4g}" for k, v in m.metrics.items())
    return f"[rlplat] stage {m.stage} done in {m.seconds:.0f} s ({m.runner}): {figures or 'no figures'} -> {m.model_path}"
