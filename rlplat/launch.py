"""``python -m rlplat.launch [overrides]``: Hydra -> Config -> validate -> preflight -> Ray -> pipeline.

Hydra composes ``rlplat/conf/`` over the schema's defaults (compose API, so that errors are ours
to phrase); the result is turned into the typed ``Config`` once, validated (the config alone), then
preflighted (plugins, files, the machine), all before Ray starts. Exit codes: 0 done, 2 bad config
or data (one paragraph naming the field and the fix), 1 a failure during the run (the message says
what failed and how to resume), 143 stopped by SIGTERM/SIGINT after a checkpoint. ``-h``/``--help``
prints the usage, the config groups, the experiments and where the fields are documented.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rlplat.config.errors import ConfigError
from rlplat.stages.exits import EXIT_CONFIG, EXIT_OK, run_guarded

if TYPE_CHECKING:
    from rlplat.config.schema import Config

USAGE = """\
usage: python -m rlplat.launch [-h] [OVERRIDE ...]    (the same: rlplat train [OVERRIDE ...])

Compose the run's config (rlplat/conf/ over the defaults of rlplat/config/schema.py), check it,
then run its stages on Ray. Each OVERRIDE is Hydra's key=value:
  grpo.total_steps=20         set a field (dotted path of rlplat/config/schema.py)
  model=llama_100m            choose a config group's option (below)
  +experiment=tiny_pipeline   apply an experiment (below)
  hydra.run.dir=DIR           the run directory (default runs/<date>_<time>); run_dir=DIR is the same
  resume=DIR                  continue the run in DIR from its last checkpoint
  dry_run=true                print the plan (placement, memory) and stop, without Ray
Exit codes: 0 done, 2 configuration or data refused (before Ray starts), 1 failed (resume=DIR
continues), 143 stopped by SIGTERM/SIGINT after a checkpoint."""


def launch_help() -> str:
    """The ``--help`` text: usage, config groups, experiments, and where the fields are documented."""
    from curricula import curriculum_option_types
    from rlplat.config.loader import conf_dir

    conf = conf_dir()
    defaults = _group_defaults(conf / "config.yaml")
    lines = [USAGE, "", "Config groups (GROUP=OPTION; * the default):"]
    for group in sorted(p for p in conf.iterdir() if p.is_dir() and p.name != "experiment"):
        lines += [_entry(f"{group.name}={p.stem}{'*' if defaults.get(group.name) == p.stem else ''}",
                         _first_sentence(p)) for p in sorted(group.glob("*.yaml"))]
    for name, options in sorted(curriculum_option_types().items()):
        star = "*" if defaults.get("curriculum") == name else ""
        about = (options.__doc__ or "").splitlines()[0].replace("``", "").removeprefix("Options of ")
        lines.append(_entry(f"curriculum={name}{star}", about))
    lines.append(_entry("curriculum.name=PATH", "a curriculum of your own, by import path (docs/curricula.md)"))
    lines += ["", "Experiments (+experiment=NAME):"]
    lines += [_entry(p.stem, _first_sentence(p)) for p in sorted((conf / "experiment").glob("*.yaml"))]
    lines += ["", "Fields: every field, its default and its meaning are in rlplat/config/schema.py",
              f"({Path(__file__).parent / 'config' / 'schema.py'}); the guides are in the repository's docs/",
              "(docs/running.md first)."]
    return "\n".join(lines)


def _entry(name: str, text: str) -> str:
    """One help entry: the name, then its text wrapped in a column of its own."""
    import textwrap

    return textwrap.fill(text, width=100, initial_indent=f"  {name}".ljust(26), subsequent_indent=" " * 26)


def _first_sentence(path: Path) -> str:
    """The first sentence of a YAML file's opening comment (not Hydra's ``# @package`` directive)."""
    block = []
    for line in path.read_text().splitlines():
        text = line.strip()
        if text.startswith("# @package"):
            continue
        if not text.startswith("#"):
            break
        block.append(text.lstrip("#").strip())
    words = " ".join(block)
    for end in (". ", ": "):
        words = words.split(end, 1)[0]
    return words.rstrip(".:") + "."


def _group_defaults(config_yaml: Path) -> dict[str, str]:
    """Each config group's default option, from the defaults list of ``rlplat/conf/config.yaml``."""
    import yaml

    entries = yaml.safe_load(config_yaml.read_text()).get("defaults", [])
    return {k: str(v) for entry in entries if isinstance(entry, dict) for k, v in entry.items()}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = sys.argv[1:] if argv is None else argv
    if "-h" in args or "--help" in args:
        print(launch_help())
        return EXIT_OK
    from rlplat.config.loader import load
    from rlplat.config.validate import validate
    from rlplat.preflight import preflight
    from rlplat.runs import prepare_run_dir

    logging.basicConfig(level=logging.INFO, format="[rlplat] %(message)s")
    try:
        cfg, run_dir = load(args)
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
    failures to exit codes with a clear message (``rlplat.stages.exits.run_guarded``)."""
    from rlplat.distributed.cluster import start_ray
    from rlplat.metrics import read_metrics
    from rlplat.report import format_report, summarize
    from rlplat.stages.pipeline import run_pipeline

    # Where to look, before anything else prints (Ray's own notices come with its start).
    print(f"rlplat: run directory {run_dir}{' (resumed)' if resume else ''}\n"
          f"  follow it: tensorboard --logdir {run_dir / 'tensorboard'}", flush=True)
    dashboard = start_ray(cfg.cluster)
    if dashboard:
        print(f"  Ray dashboard: {dashboard}", flush=True)
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
