"""Inside a stage's Ray job: ``python -m rlplat.stages.job_entry RUN_DIR STAGE HASH JOB_ID
--address GCS [--resume]``.

The launcher submits this (``rlplat.stages.ray_jobs``). It reads the run's own ``config.yaml``,
joins the launcher's cluster (``--address``, its GCS), runs the one stage with
``rlplat.stages.pipeline.run_stage`` (the code the launcher runs in-process without a dashboard)
and exits with the launcher's codes: 0 done, 2 configuration refused, 1 failed, 143 preempted.
This module also holds that mapping of failures to exit codes, which the launcher shares.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from rlplat.config.errors import ConfigError
from rlplat.runtime.signals import Preempted

T = TypeVar("T")
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_PREEMPTED = 143


class StageFailed(RuntimeError):
    """A stage's Ray job failed; ``log_path`` holds its output (and ``error.log`` its traceback)."""

    def __init__(self, stage: str, job_id: str, exit_code: int | None, log_path: Path) -> None:
        self.stage, self.job_id, self.exit_code, self.log_path = stage, job_id, exit_code, log_path
        code = "no exit code" if exit_code is None else f"exit code {exit_code}"
        super().__init__(f"stage {stage} failed (Ray job {job_id}, {code}); its log: {log_path}")


def run_guarded(run_dir: Path, work: Callable[[], T]) -> tuple[int, T | None]:
    """Run ``work``; returns the exit code and its result (None unless it succeeded). How it
    ended is printed as one clear message: a ``ConfigError`` (2), preemption (143), any other
    failure (1, traceback in ``error.log``; a failed stage job wrote its own there)."""
    try:
        return EXIT_OK, work()
    except StageFailed as err:
        print(f"rlplat: the run failed: {err}\n(the stage's traceback, if it got that far: {run_dir / 'error.log'}) "
              f"Continue with: python -m rlplat.launch resume={run_dir}", file=sys.stderr)
        return EXIT_FAILED, None
    except ConfigError as err:
        print(f"rlplat: {err}", file=sys.stderr)
        return EXIT_CONFIG, None
    except Preempted as err:
        print(f"rlplat: {err}", file=sys.stderr)
        return EXIT_PREEMPTED, None
    except Exception as err:  # noqa: BLE001 - every failure ends in one clear message
        (run_dir / "error.log").write_text(traceback.format_exc())
        print(f"rlplat: the run failed: {err}\n(traceback in {run_dir / 'error.log'}) "
              f"The last complete checkpoint (if any) is under "
              f"{run_dir / 'checkpoints'}; continue with: python -m rlplat.launch resume={run_dir}",
              file=sys.stderr)
        return EXIT_FAILED, None


def main(argv: list[str]) -> int:
    """Run one stage of the run in ``argv[0]``; returns the exit code."""
    import logging

    from rlplat.config.loader import saved_config
    from rlplat.distributed.cluster import start_ray
    from rlplat.stages.pipeline import run_stage

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
    code, _ = run_guarded(args.run_dir, lambda: run_stage(cfg, args.run_dir, args.stage, args.resume,
                                                          args.config_hash, runner="ray_job", job_id=args.job_id))
    return code


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main(sys.argv[1:]))
