"""``python -m rlplat.launch [overrides]``: Hydra -> Config -> validate -> preflight -> Ray -> pipeline.

Hydra composes ``rlplat/conf/`` over the schema's defaults (compose API, so that errors are ours
to phrase); the result is turned into the typed ``Config`` once, validated (the config alone), then
preflighted (plugins, files, the machine), all before Ray starts. Exit codes: 0 done, 2 bad config
or data (one paragraph naming the field and the fix), 1 a failure during the run (the message says
what failed and how to resume), 143 stopped by SIGTERM/SIGINT after a checkpoint.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rlplat.config.errors import ConfigError

if TYPE_CHECKING:
    from rlplat.config.schema import Config

EXIT_CONFIG = 2  # as rlplat.stages.job_entry (imported late: the launcher starts fast)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    from rlplat.config.loader import load
    from rlplat.config.validate import validate
    from rlplat.preflight import preflight
    from rlplat.runs import prepare_run_dir

    logging.basicConfig(level=logging.INFO, format="[rlplat] %(message)s")
    try:
        cfg, run_dir = load(sys.argv[1:] if argv is None else argv)
        validate(cfg)
        preflight(cfg)
        if cfg.dry_run:
            from rlplat.runtime.plan_report import describe

            print(describe(cfg))
            return 0
        resume = prepare_run_dir(cfg, run_dir)
    except ConfigError as err:
        print(f"rlplat: {err}", file=sys.stderr)
        return EXIT_CONFIG
    return _run(cfg, run_dir, resume)


def _run(cfg: Config, run_dir: Path, resume: bool) -> int:
    """Start Ray and run the pipeline (its stages as Ray jobs when the dashboard is on); maps
    failures to exit codes with a clear message (``rlplat.stages.job_entry.run_guarded``)."""
    from rlplat.distributed.cluster import start_ray
    from rlplat.metrics import read_metrics
    from rlplat.report import format_report, summarize
    from rlplat.stages.job_entry import EXIT_OK, run_guarded
    from rlplat.stages.pipeline import run_pipeline

    dashboard = start_ray(cfg.cluster)
    code, final = run_guarded(run_dir, lambda: run_pipeline(cfg, run_dir, resume,
                                                            dashboard if cfg.cluster.dashboard else None))
    if code != EXIT_OK:
        return code
    summary = {**summarize(read_metrics(run_dir / "metrics.jsonl")), "run_dir": str(run_dir)}
    print(format_report(summary))
    if (run_dir / "report.md").is_file():
        print(f"Report with plots: {run_dir / 'report.md'}")
    print(f"Final model: {final}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
