"""Runs the configured stages in order, each consuming the model directory the last produced.

A finished stage leaves a manifest (``stages/<name>.json``); on resume, finished stages are
skipped and the interrupted one continues from its checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from rlplat.config.schema import Config
from rlplat.stages.context import StageContext, read_manifest, write_manifest
from rlplat.stages.grpo import GRPOStage
from rlplat.stages.prefilter import PrefilterStage
from rlplat.stages.warmstart import WarmStartStage

log = logging.getLogger(__name__)


class Stage(Protocol):
    """A pipeline stage: runs from a model directory, returns the one it produced."""

    name: str

    def run(self, ctx: StageContext) -> str:
        """Run the stage; returns its output model directory."""
        ...


STAGES: dict[str, type[Stage]] = {"warmstart": WarmStartStage, "prefilter": PrefilterStage, "grpo": GRPOStage}


def initial_model(cfg: Config, run_dir: Path) -> str:
    """``model.path``, or a tiny Llama built into the run directory when it is unset."""
    if cfg.model.path:
        return cfg.model.path
    from rlplat.models.tiny import TinyModelSpec, build_tiny_llama

    t = cfg.model.tiny
    spec = TinyModelSpec(t.hidden_size, t.intermediate_size, t.num_layers, t.num_heads, t.num_kv_heads,
                         t.max_position_embeddings, cfg.seed)
    return str(build_tiny_llama(run_dir / "initial_model", spec))


def run_pipeline(cfg: Config, run_dir: Path, resume: bool) -> str:
    """Run every stage of ``cfg.stages``; returns the last model directory."""
    model_path = initial_model(cfg, run_dir)
    for name in cfg.stages:
        done = read_manifest(run_dir, name) if resume else None
        if done is not None:
            log.info("stage %s already finished: %s", name, done["model_path"])
            model_path = done["model_path"]
            continue
        out = STAGES[name]().run(StageContext(cfg, run_dir, model_path, resume))
        write_manifest(run_dir, name, {"model_path": out, "input_model": model_path})
        model_path = out
    return model_path
