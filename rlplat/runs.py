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
        if latest_checkpoint(run_dir) is None and not (run_dir / "stages").exists():
            raise ConfigError("resume", f"{run_dir} has no complete checkpoint to continue from.",
                              "start a new run (drop resume=...) or point resume at a run with checkpoints/.")
        _write_config(cfg, saved)
        return True
    if saved.exists():
        raise ConfigError("hydra.run.dir", f"{run_dir} already holds a run (config.yaml is there).",
                          f"continue it with resume={run_dir}, or choose a new directory with hydra.run.dir=DIR.")
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_config(cfg, saved)
    return False


def _write_config(cfg: Config, path: Path) -> None:
    atomic_write(path, yaml.safe_dump(json.loads(json.dumps(to_plain(cfg))), sort_keys=False))
