"""Inside a stage's Ray job: ``python -m rlplat.stages.job_entry RUN_DIR STAGE HASH JOB_ID
--address GCS [--resume]``.

The launcher submits this (``rlplat.stages.ray_jobs``). It reads the run's own ``config.yaml``,
joins the launcher's cluster (``--address``, its GCS), runs the one stage with
``rlplat.stages.pipeline.run_stage`` (the code the launcher runs in-process without a dashboard)
and exits with the launcher's codes (``rlplat.stages.exits``): 0 done, 2 configuration refused
(the error also in ``stages/<name>/error.json``, which the launcher reads), 1 failed, 143 preempted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

from rlplat.config.errors import ConfigError
from rlplat.config.loader import saved_config
from rlplat.config.schema import Config
from rlplat.distributed.cluster import start_ray
from rlplat.stages.base import StageManifest, config_error_path
from rlplat.stages.exits import run_guarded, write_config_error
from rlplat.stages.pipeline import run_stage


def run_job_stage(cfg: Config, run_dir: Path, stage: str, resume: bool, config_hash: str,
                  job_id: str) -> StageManifest:
    """``run_stage`` as a Ray job: a ``ConfigError`` is also left in ``stages/<stage>/error.json``
    (``rlplat.stages.exits.write_config_error``) for the launcher to raise again, then re-raised."""
    try:
        return run_stage(cfg, run_dir, stage, resume, config_hash, runner="ray_job", job_id=job_id)
    except ConfigError as err:
        write_config_error(config_error_path(run_dir, stage), err)
        raise


def main(argv: list[str]) -> int:
    """Run one stage of the run in ``argv[0]``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m rlplat.stages.job_entry")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("stage")
    parser.add_argument("config_hash")
    parser.add_argument("job_id")
    parser.add_argument("--address", required=True, help="GCS address of the cluster to join")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[rlplat] %(message)s")
    cfg = saved_config(args.run_dir)
    start_ray(replace(cfg.cluster, address=args.address), log_to_driver=cfg.cluster.log_to_driver)
    code, _ = run_guarded(args.run_dir, lambda: run_job_stage(cfg, args.run_dir, args.stage, args.resume,
                                                              args.config_hash, args.job_id))
    return code


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main(sys.argv[1:]))
