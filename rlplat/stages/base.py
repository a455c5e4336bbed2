"""The stage contract: what a stage receives, and the typed manifest it hands the next one.

A stage runs from a model directory and returns a ``StageManifest``: the model directory it
produced and named artifacts (files) that later stages may use. Stages never import each other:
a GRPO stage finds a prefilter's pass-rate table as the artifact ``PASS_RATE_TABLE`` of an earlier
manifest. The pipeline (``rlplat.stages.pipeline``) adds what it knows (config hash, runner,
timings) and writes each manifest to ``<run>/stages/<name>/manifest.json``; a re-run skips the
stages whose manifest matches.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from rlbase import atomic_write
from rlplat.config.schema import Config
from rlplat.metrics import MetricsLogger
from rlplat.telemetry import run_tags

# Artifact names (the vocabulary stages share).
PASS_RATE_TABLE = "pass_rate_table"  # JSONL {uid, attempts, successes, pass_rate} (curricula.PassRateStore)
KEPT_UIDS = "kept_uids"  # text file, one prompt uid a line: the prompts later stages train on
NAS_PARENT = "nas_parent"  # model directory: the parent a NAS stage searched from (distillation's teacher)
TEACHER = "teacher"  # model directory: the teacher a distillation stage distilled from (provenance)

# What the supervised stages show on their progress line.
SFT_BAR_KEYS = (("sft/loss", "loss"),)


@dataclass(frozen=True)
class StageManifest:
    """What a finished stage produced.

    Attributes:
        stage: The stage's name.
        model_path: Hugging Face model directory the next stage starts from.
        input_model: The model directory this stage started from.
        artifacts: Named files for later stages (see the names above).
        metrics: The stage's summary figures (for example ``sft/loss_first``, ``sft/loss_last``).
        config_hash: Content hash of what the stage's result depends on (its config sections, its
            input model, the upstream stages' hashes): a re-run skips the stage when it matches.
        runner: ``"ray_job"`` (submitted through the Ray Jobs API) or ``"driver"`` (run in the
            launcher's process: ``cluster.dashboard=false``).
        job_id: The Ray job's submission id (``runner == "ray_job"``).
        started_at: Unix time the stage started.
        seconds: Its wall time.
    """

    stage: str
    model_path: str
    input_model: str
    artifacts: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    config_hash: str = ""
    runner: str = "driver"
    job_id: str | None = None
    started_at: float = 0.0
    seconds: float = 0.0


@dataclass(frozen=True)
class StageContext:
    """Inputs of a stage.

    Attributes:
        cfg: The whole validated run config.
        run_dir: The run directory (config.yaml, metrics.jsonl, checkpoints/ ...).
        model_path: Hugging Face model directory the stage starts from.
        resume: True when continuing an interrupted run in ``run_dir``.
        upstream: Manifests of the stages that ran before this one, in order.
        config_hash: The stage's config hash (``rlplat.stages.pipeline.stage_hash``): partial
            results a stage keeps across an interruption are reused only under the same hash.
    """

    cfg: Config
    run_dir: Path
    model_path: str
    resume: bool
    upstream: tuple[StageManifest, ...] = ()
    config_hash: str = ""

    def artifact(self, name: str) -> str | None:
        """The newest upstream artifact called ``name``, or None."""
        return next((m.artifacts[name] for m in reversed(self.upstream) if name in m.artifacts), None)


class Stage(Protocol):
    """A pipeline stage (registered in ``rlplat.stages.STAGES``).

    ``config_sections`` (optional) names the parts of the config its result depends on (top-level
    fields or dotted sections such as ``"data.synthetic"``); a stage without it depends on all of it.
    ``preflight(cfg)`` (optional) checks what the stage will read (model directories, data files)
    at launch, before Ray starts, raising ``ConfigError``; ``starts_engines = True`` (optional) says
    that it generates with the rollout engines (``rlplat.stages.checks``).
    """

    name: str

    def run(self, ctx: StageContext) -> StageManifest:
        """Run the stage; returns what it produced."""
        ...


def stage_dir(run_dir: Path, stage: str) -> Path:
    """The directory of the stage named ``stage`` in ``stages=[...]``: its manifest and job log."""
    return run_dir / "stages" / stage.replace("/", "_")


def stage_metrics(ctx: StageContext, stage: str, total_steps: int, bar_keys: tuple[tuple[str, str], ...]
                  ) -> MetricsLogger:
    """The step log of a stage other than GRPO (whose lines are the run's ``metrics.jsonl``):
    ``stages/<stage>/metrics.jsonl``, tagged Ray metrics, TensorBoard / wandb as configured, and a
    progress line at most every 5 s (these stages take many short steps and start over on resume)."""
    cfg = ctx.cfg
    return MetricsLogger(ctx.run_dir, stage, total_steps, 0, path=stage_dir(ctx.run_dir, stage) / "metrics.jsonl",
                         settings=cfg.metrics, progress=cfg.progress, tags=run_tags(ctx.run_dir, cfg.experiment, stage),
                         bar_keys=bar_keys, config=asdict(cfg), min_interval_s=5.0)


def manifest_path(run_dir: Path, stage: str) -> Path:
    """Where the manifest of the stage named ``stage`` in ``stages=[...]`` is written."""
    return stage_dir(run_dir, stage) / "manifest.json"


def config_error_path(run_dir: Path, stage: str) -> Path:
    """Where the Ray job of the stage named ``stage`` leaves the configuration error it stopped on
    (``rlplat.stages.exits.write_config_error``); the launcher raises it again from there."""
    return stage_dir(run_dir, stage) / "error.json"


def write_manifest(run_dir: Path, stage: str, manifest: StageManifest) -> None:
    """Record a finished stage (as named in ``stages=[...]``) atomically; resume skips it."""
    atomic_write(manifest_path(run_dir, stage), json.dumps(asdict(manifest), indent=2), fsync=True)


def read_manifest(run_dir: Path, stage: str) -> StageManifest | None:
    """The manifest of a finished stage, or None."""
    path = manifest_path(run_dir, stage)
    return StageManifest(**json.loads(path.read_text())) if path.exists() else None
