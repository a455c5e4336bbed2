"""What every stage receives, and the small records stages leave in the run directory."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlplat.config.schema import Config


@dataclass(frozen=True)
class StageContext:
    """Inputs of a stage.

    Attributes:
        cfg: The whole validated run config.
        run_dir: The run directory (config.yaml, metrics.jsonl, checkpoints/ ...).
        model_path: Hugging Face model directory the stage starts from.
        resume: True when continuing an interrupted run in ``run_dir``.
    """

    cfg: Config
    run_dir: Path
    model_path: str
    resume: bool


def manifest_path(run_dir: Path, stage: str) -> Path:
    """Where a finished stage records its output model directory."""
    return run_dir / "stages" / f"{stage}.json"


def write_manifest(run_dir: Path, stage: str, data: dict[str, Any]) -> None:
    """Record a finished stage atomically (resume skips stages that have one)."""
    path = manifest_path(run_dir, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def read_manifest(run_dir: Path, stage: str) -> dict[str, Any] | None:
    """The manifest of a finished stage, or None."""
    path = manifest_path(run_dir, stage)
    return json.loads(path.read_text()) if path.exists() else None
