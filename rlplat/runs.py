"""The run directory: created, guarded against overwriting another run, and holding config.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from rlbase import atomic_write, to_plain
from rlplat.checkpoint import latest_checkpoint
from rlplat.config.errors import ConfigError
from rlplat.config.schema import Config


def prepare_run_dir(cfg: Config, run_dir: Path) -> bool:
    """Create ``run_dir`` and write ``config.yaml``; returns True when resuming.

    A directory that already holds a run is never overwritten: without ``resume`` it is an error,
    since its checkpoints and metrics would be lost.
    """
    saved = run_dir / "config.yaml"
    if cfg.resume:
        if not resumable(run_dir):
            raise ConfigError("resume", f"{run_dir} has no complete checkpoint or finished stage to continue from.",
                              "start a new run (drop resume=...) or point resume at a run with checkpoints/.")
        _write_config(cfg, saved)
        return True
    if saved.exists():
        raise ConfigError("hydra.run.dir", f"{run_dir} already holds a run (config.yaml is there).",
                          f"continue it with resume={run_dir}, or choose a new directory with hydra.run.dir=DIR.")
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_config(cfg, saved)
    return False


def resumable(run_dir: Path) -> bool:
    """Whether ``resume=run_dir`` has something to continue from: a complete checkpoint, or a stage
    that finished (its manifest; a resumed pipeline skips it)."""
    return latest_checkpoint(run_dir) is not None or any((run_dir / "stages").glob("*/manifest.json"))


def how_to_continue(run_dir: Path) -> str:
    """The sentence a failed run ends with: resume when something was saved, else start afresh."""
    if resumable(run_dir):
        return f"Continue with: python -m rlplat.launch resume={run_dir}"
    return (f"Nothing was saved to continue from: once the cause is fixed, start again (remove {run_dir}, or "
            "give the new run another hydra.run.dir).")


def _write_config(cfg: Config, path: Path) -> None:
    atomic_write(path, yaml.safe_dump(json.loads(json.dumps(to_plain(cfg))), sort_keys=False))
