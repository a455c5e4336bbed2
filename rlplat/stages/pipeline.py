"""Runs the configured stages in order, each starting from the model directory the last produced.

A finished stage leaves a manifest (``stages/<name>.json``); on resume, finished stages are
skipped (their manifests are read back) and the interrupted one continues from its checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rlplat.config.schema import Config
from rlplat.stages import STAGES
from rlplat.stages.base import StageContext, StageManifest, read_manifest, write_manifest

log = logging.getLogger(__name__)


def initial_model(cfg: Config, run_dir: Path) -> str:
    """``model.path``, or the Llama of ``model.tiny`` built into the run directory when it is unset."""
    if cfg.model.path:
        return cfg.model.path
    from rlplat.models.tiny import build_tiny_llama

    return str(build_tiny_llama(run_dir / "initial_model", cfg.model.tiny, seed=cfg.seed))


def run_pipeline(cfg: Config, run_dir: Path, resume: bool) -> str:
    """Run every stage of ``cfg.stages``; returns the last model directory."""
    model_path = initial_model(cfg, run_dir)
    done: list[StageManifest] = []
    for name in cfg.stages:
        manifest = read_manifest(run_dir, name) if resume else None
        if manifest is not None:
            log.info("stage %s already finished: %s", name, manifest.model_path)
        else:
            stage = STAGES.resolve(name).target()
            manifest = stage.run(StageContext(cfg, run_dir, model_path, resume, tuple(done)))
            write_manifest(run_dir, name, manifest)
        done.append(manifest)
        model_path = manifest.model_path
    return model_path
